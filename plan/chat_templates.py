"""The named chat templates of `data.chat_template`: Jinja sources and the token that ends an assistant turn.

Part of the plan contract: a plan names a template (`data.chat_template.name`) and both sides read its
meaning here. The compiler needs only the names (and, for help lines, the special tokens each template
writes); the runtime renders the sources in jinja2's sandbox (runtime/data/templates.py). Each source renders a prefix
of a conversation as a prefix of the whole, with `add_generation_prompt` ending exactly where an assistant
turn's content starts, which is how the completion mask is found.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                  "the request.\n\n")
_SYSTEM_SPLIT = ("{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
                 "{% set loop_messages = messages[1:] %}"
                 "{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}")
_NO_TOOLS = "{% else %}{{ raise_exception('this template has no ' + message['role'] + ' role') }}{% endif %}"


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    source: str
    end: str | None  # text that closes an assistant turn; None: the tokenizer's EOS
    tokens: tuple[str, ...]  # special tokens the template writes, which a tokenizer should hold as single tokens
    family: str  # for docs: where the layout comes from


CHATML = NamedTemplate(
    "chatml",
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "<|im_end|>", ("<|im_start|>", "<|im_end|>"), "Qwen, OpenHermes, Axolotl's chatml")

LLAMA3 = NamedTemplate(
    "llama3",
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "Llama 3, 3.1, 3.2 Instruct")

MISTRAL = NamedTemplate(
    "mistral",
    "{{ bos_token }}" + _SYSTEM_SPLIT +
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + (system + '\n\n' if loop.first and system else '') + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}" + _NO_TOOLS +
    "{% endfor %}",
    None, (), "Mistral-7B-Instruct v0.1-v0.3 (the system text opens the first user turn)")

GEMMA = NamedTemplate(
    "gemma",
    "{{ bos_token }}" + _SYSTEM_SPLIT +
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}"
    "{% if role not in ('user', 'model') %}{{ raise_exception('this template has no ' + role + ' role') }}"
    "{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + (system + '\n\n' if loop.first and system else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    "<end_of_turn>", ("<start_of_turn>", "<end_of_turn>"), "Gemma 1, 2, 3 (the system text opens the first turn)")

ZEPHYR = NamedTemplate(
    "zephyr",
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
    None, (), "Zephyr, TinyLlama-Chat (role markers are plain text)")

ALPACA = NamedTemplate(
    "alpaca",
    "{{ bos_token }}" + _SYSTEM_SPLIT +
    "{{ (system + '\n\n') if system else '" + DEFAULT_SYSTEM.replace("\n", "\\n") + "' }}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n### Response:\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + '\n\n' }}" + _NO_TOOLS +
    "{% endfor %}",
    None, (), "Stanford Alpaca's instruction layout, one `### Instruction` / `### Response` pair per turn")

NAMED: dict[str, NamedTemplate] = {t.name: t for t in (CHATML, LLAMA3, MISTRAL, GEMMA, ZEPHYR, ALPACA)}


def is_template_file(value: str) -> bool:
    """A `chat_template` value that names a file rather than a built-in template."""
    return value not in NAMED and ("/" in value or "\\" in value or value.endswith((".jinja", ".j2", ".jinja2")))


def sandbox_environment():
    """The one environment chat templates compile in, at check time and at run time: jinja2's immutable
    sandbox with transformers' options (trim_blocks, lstrip_blocks, loop controls, `{% generation %}` as a
    marker that renders its body, `raise_exception`, `tojson`)."""
    import json

    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def jinja_problem(source: str) -> str | None:
    """Why `source` does not compile in the sandbox (None: it does)."""
    import jinja2

    try:
        sandbox_environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"{exc.message} (line {exc.lineno})"
    return None
