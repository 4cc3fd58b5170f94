#!/usr/bin/env bash
# Review the recipes a pull request changes: `ftc fmt --check` and `ftc check` with workflow annotations, and
# for each changed recipe `ftc diff` against the base branch, as annotations (--format github) and as a
# markdown comment (--format markdown) written to OUT. Exit 1 when a recipe is unformatted or does not check.
# Usage: ftc-review.sh BASE_REF [OUT]   (run at the repository root, with BASE_REF fetched)
set -uo pipefail
base="$1"
out="${2:-ftc-review.md}"
mapfile -t changed < <(git diff --name-only --diff-filter=AMR "$base"...HEAD -- '*.ftspec')
{
  echo "## ftc: recipes changed in this pull request"
  echo
} > "$out"
if [ "${#changed[@]}" -eq 0 ]; then
  echo "No recipe changed." >> "$out"
  exit 0
fi
status=0
ftc fmt --check "${changed[@]}" || status=1
ftc check --format github "${changed[@]}" || status=1
tmp="$(mktemp -d)"
git worktree add --detach --quiet "$tmp/base" "$base"
for recipe in "${changed[@]}"; do
  if [ ! -f "$tmp/base/$recipe" ]; then
    printf '### `%s` is new\n\n' "$recipe" >> "$out"
    continue
  fi
  # the base side is compiled in its own checkout, so its relative paths (extends, data) resolve there
  ftc diff "$tmp/base/$recipe" "$recipe" --format github | sed "s|$tmp/base/|$base:|g"
  ftc diff "$tmp/base/$recipe" "$recipe" --format markdown | sed "s|$tmp/base/|$base:|g" >> "$out"
  [ "${PIPESTATUS[0]}" -le 1 ] || status=1   # 0 equal, 1 changed, 2 a side that does not compile
done
git worktree remove --force "$tmp/base"
rm -rf "$tmp"
exit "$status"
