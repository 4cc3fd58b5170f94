"""The command line shared by `ftc run` and `python -m ftc.runtime.train --plan DIR` (what launch.sh
starts): options, message on user errors, exit codes."""

from __future__ import annotations

import os
import sys

from ftc.plan import EXIT_ABORTED, UserError


def add_run_options(parser) -> None:
    parser.add_argument("--resume", metavar="auto|PATH", default=None,
                        help="continue from the newest verified checkpoint of this recipe's runs (auto), "
                             "or from a checkpoint or run folder")
    parser.add_argument("--run-id", default=None, help="name of the run folder (default: a timestamp)")
    merge = parser.add_mutually_exclusive_group()
    merge.add_argument("--merge", dest="merge", action="store_true", default=None,
                       help="also write the LoRA adapter merged into the base weights")
    merge.add_argument("--no-merge", dest="merge", action="store_false")


def quiet_libraries() -> None:
    """Library chatter (weight loading bars, advisory warnings) would bury the progress lines."""
    import logging
    import warnings

    # bitsandbytes logs at import that an optional CPU kernel package is absent; training does not need it
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_plan_folder(folder, args) -> int:
    """Load the plan in `folder` and execute it; user errors become one message and exit 1."""
    from ftc.plan import load_plan

    # OpenMP threads that busy-wait between operations starve a shared or small CPU: with other jobs
    # running on 2 cores, the tiny demo took 314 s instead of about 25 s. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        plan = load_plan(folder)
        from ftc.runtime.launch.rank import check_world

        problem = check_world(plan.world_size)  # a rank must be one of exactly the ranks the plan counts
        if problem is not None:
            from .errors import RunError

            raise RunError(problem)
        quiet_libraries()
        from .run import RunOptions, execute

        result = execute(plan, RunOptions(resume=args.resume, run_id=args.run_id, merge=args.merge))
    except UserError as exc:  # the plan, the model, the data: one message, the error's exit code
        print(f"ftc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return result.exit_code


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftc.runtime.train",
                                     description="execute a compiled plan in this process")
    parser.add_argument("--plan", required=True, metavar="DIR", help="compiled folder holding plan.json")
    add_run_options(parser)
    args = parser.parse_args(argv)
    from ftc.runtime.launch.rank import finish, rank_process

    with rank_process() as code:  # launched ranks: own log file, pid and exit record
        try:
            code[0] = run_plan_folder(args.plan, args)
        except KeyboardInterrupt:
            print("ftc: interrupted", file=sys.stderr)
            code[0] = EXIT_ABORTED
        finish(code[0])
        return code[0]
