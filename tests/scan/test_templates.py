"""Chat template checker: real-world shaped templates are clean, sandbox escapes, gadgets and
resource bombs are found, and nothing but findings or Unverified ever comes out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owl.engine.template import CHATML, ChatTemplate
from owl.formats import inspect
from owl.scan import template_config, templates
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.template_worker import trial_render
from owl.scan.templates import check_template, scan_jinja_file, scan_tokenizer_config
from tests.scan.test_template_checks import CRITICAL

WHERE = "metadata key 'tokenizer.chat_template'"

# Written for these tests in the shape of Llama 3.1's tool-calling template: namespace,
# loop.last, raise_exception, tojson, strftime_now, tools, slicing, tests.
LLAMA_LIKE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {{- "You may call these functions:\\n\\n" }}
    {%- for t in tools %}{{- t | tojson(indent=4) }}{{- "\\n\\n" }}{%- endfor %}
{%- endif %}
{{- system_message + "<|eot_id|>" }}
{%- set ns = namespace(calls=0) %}
{%- for message in messages %}
    {%- if message.role not in ['user', 'assistant', 'tool', 'ipython'] %}
        {{- raise_exception("unknown role: " ~ message.role) }}
    {%- endif %}
    {%- if message.role == 'assistant' and message.tool_calls is defined and message.tool_calls %}
        {%- set ns.calls = ns.calls + message.tool_calls|length %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
        {%- for tool_call in message.tool_calls %}
            {%- set call = tool_call.function %}
            {{- '{"name": "' + call.name + '", "parameters": ' }}
            {{- call.arguments | tojson }}{{- "}" }}
            {%- if not loop.last %}{{- "; " }}{%- endif %}
        {%- endfor %}
        {{- "<|eot_id|>" }}
    {%- elif message.role in ['tool', 'ipython'] %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping %}{{- message.content | tojson }}
        {%- else %}{{- message.content }}{%- endif %}
        {{- "<|eot_id|>" }}
    {%- else %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
        {{- message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# In the shape of Qwen's: a namespace found by walking the messages backwards, string
# methods, the generation block transformers adds.
QWEN_LIKE = """{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string
        and not (message.content.startswith('<tool_response>')
        and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- if tools %}
    {{- '<|im_start|>system\\n# Tools\\n<tools>' }}
    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- endif %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if message.role == "assistant" %}
        {%- if '</think>' in content %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' }}{% generation %}{{- content }}{% endgeneration %}
        {%- for tool_call in message.tool_calls | default([]) %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.function.name }}
            {{- '", "arguments": ' }}{{- tool_call.function.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + content }}
        {{- '\\n</tool_response><|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

# In the shape of Mistral's first template: refuses a system message and tool messages.
MISTRAL_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)

BENIGN = {"chatml": CHATML, "llama-like": LLAMA_LIKE, "qwen-like": QWEN_LIKE}
BENIGN["mistral-like"] = MISTRAL_LIKE


def test_the_bundled_models_template_is_clean(bundled_gguf: Path) -> None:
    source = inspect(bundled_gguf).chat_template
    assert source and "im_start" in source
    assert check_template(source, file="smollm2.gguf", location=WHERE) == []


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_world_shaped_templates_are_clean(name: str) -> None:
    assert check_template(BENIGN[name], file="x.gguf", location=WHERE) == []


def test_the_benign_twins_really_render() -> None:
    # A clean verdict must come from templates that work, not from ones that always fail.
    rules = templates.rules()
    tool_call = next(c for c in rules.conversations if "tools" in c)
    for source in (LLAMA_LIKE, QWEN_LIKE):
        rendered = ChatTemplate(source, bos_token="<s>").render(
            tool_call["messages"], tools=tool_call["tools"]
        )
        assert "get_weather" in rendered and '"city": "Paris"' in rendered
    assert ChatTemplate(MISTRAL_LIKE).render([{"role": "user", "content": "hi"}]) == (
        "[INST] hi [/INST]"
    )


BOMBS = {
    "repeat": "{{ 'a' * 1000000000 }}",
    "power": "{{ 9 ** (9 ** 9) }}",
    "output": "{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}",
    "cpu": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "loop": "{% for i in range(999999999) %}x{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "shared references": "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
    "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
}


LIMITS = {
    "repeat": "value size",
    "power": "number size",
    "output": "output",
    "cpu": "time",
    "loop": "100,000-step loop",
    "recursion": "recursion",
    "shared references": "value size",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_resource_bombs_are_high_and_name_the_limit(name: str) -> None:
    # Bounded by the CPU limit of the child they render in (test_template_trial.py).
    findings = check_template(BOMBS[name], file="f", location=WHERE)
    assert [(f.severity, f.check) for f in findings] == [(Severity.HIGH, "template.resource")]
    assert findings[0].location.startswith(f"{WHERE}, rendering ")
    assert f"the trial render's {LIMITS[name]} limit" in findings[0].reason


def test_a_short_loop_is_not_a_bomb() -> None:
    # The benign twin of "loop": range() within the limit renders, clean.
    source = CHATML + "{% for i in range(100000) %}{% endfor %}"
    assert check_template(source, file="f", location=WHERE) == []


def test_what_the_sandbox_refuses_at_run_time_is_critical() -> None:
    # A name that no static rule follows (built in a loop); the sandbox refuses it.
    source = (
        "{% set ns = namespace(n='') %}{% for p in ['__cla', 'ss__'] %}"
        "{% set ns.n = ns.n ~ p %}{% endfor %}{{ (messages|attr(ns.n)).base }}"
    )
    findings = check_template(source, file="f", location=WHERE)
    assert ("template.sandbox", Severity.CRITICAL) in {(f.check, f.severity) for f in findings}


def test_mutating_a_list_is_a_broken_template_not_an_attack() -> None:
    source = "{% set seen = [] %}{% for m in messages %}{% set _ = seen.append(m) %}{% endfor %}"
    findings = check_template(source, file="f", location=WHERE)
    assert [(f.check, f.severity) for f in findings] == [("template.render", Severity.LOW)]


def test_refusing_some_conversations_is_fine_refusing_all_is_low() -> None:
    assert check_template(MISTRAL_LIKE, file="f", location=WHERE) == []
    findings = check_template("{{ raise_exception('no') }}", file="f", location=WHERE)
    assert [(f.check, f.severity) for f in findings] == [("template.render", Severity.LOW)]


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("{% for %}", f"{WHERE}, line 1"),
        ("ok\n{{ x|no_such_filter }}", f"{WHERE}, line 2"),
        ("{{" + "(" * 3000 + "1" + ")" * 3000 + "}}", WHERE),
        ("{% for i in messages %}" * 30 + "{% endfor %}" * 30, WHERE),
    ],
)
def test_a_template_that_does_not_compile_is_unverified(source: str, where: str) -> None:
    with pytest.raises(Unverified, match="does not compile") as caught:
        check_template(source, file="f", location=WHERE)
    assert caught.value.location == where
    with pytest.raises(Exception, match="does not compile"):
        ChatTemplate(source)  # the engine refuses it too


def test_findings_survive_a_compile_error() -> None:
    with pytest.raises(Unverified) as caught:
        check_template("{{ x.__class__|no_such_filter }}", file="f", location=WHERE)
    assert [f.severity for f in caught.value.findings] == [Severity.CRITICAL]


def test_template_size_bounds() -> None:
    padding = "{# " + "x" * templates.LARGE_TEMPLATE_CHARS + " #}"
    findings = check_template(CHATML + padding, file="f", location=WHERE)
    assert [(f.check, f.severity) for f in findings] == [("template.size", Severity.LOW)]
    with pytest.raises(Unverified, match="too large"):
        check_template("x" * (templates.MAX_TEMPLATE_CHARS + 1), file="f", location=WHERE)


def _config(tmp_path: Path, chat_template: object) -> Path:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"bos_token": "<s>", "chat_template": chat_template}))
    return path


def test_tokenizer_config_templates(tmp_path: Path) -> None:
    assert scan_tokenizer_config(_config(tmp_path, CHATML), file="t") == []
    findings = scan_tokenizer_config(_config(tmp_path, CRITICAL["lipsum"]), file="t")
    assert {f.location for f in findings} == {"chat_template, line 1"}
    named = [
        {"name": "default", "template": CHATML},
        {"name": "tool_use", "template": "{{ request }}"},
    ]
    findings = scan_tokenizer_config(_config(tmp_path, named), file="t")
    assert [(f.location, f.severity) for f in findings] == [
        ("chat_template[tool_use], line 1", Severity.HIGH)
    ]
    path = tmp_path / "tokenizer_config.json"
    path.write_text('{"model_max_length": 512}')
    assert scan_tokenizer_config(path, file="t") == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"chat_template": "{{ x }}"', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'["chat_template"]', "not a tokenizer configuration"),
        (b'{"chat_template": 7}', "neither text nor a list"),
        (b'{"chat_template": [{"name": "x"}]}', "no template text"),
        (b'{"chat_template": "{% if %}"}', "does not compile"),
    ],
)
def test_broken_tokenizer_configs_are_unverified(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_bytes(content)
    with pytest.raises(Unverified, match=reason):
        scan_tokenizer_config(path, file="t")


def test_a_huge_tokenizer_config_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template_config, "MAX_CONFIG_BYTES", 1000)
    path = _config(tmp_path, CHATML + " " * 2000)
    with pytest.raises(Unverified, match="larger than 1,000 bytes"):
        scan_tokenizer_config(path, file="t")


def test_jinja_files(tmp_path: Path) -> None:
    path = tmp_path / "chat_template.jinja"
    path.write_text(LLAMA_LIKE)
    assert scan_jinja_file(path, file="chat_template.jinja") == []
    path.write_text(CRITICAL["cve-2024-34359"])
    findings = scan_jinja_file(path, file="chat_template.jinja")
    assert findings and findings[0].location == "chat template, line 1"
    path.write_bytes(b"{{ '\xff' }}")
    with pytest.raises(Unverified, match="not UTF-8"):
        scan_jinja_file(path, file="chat_template.jinja")


FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    " ",
    "x",
    "'a'",
    "1",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "|",
    "~",
    "*",
    "-",
    "messages",
    "__class__",
    "mro",
    "attr",
    "lipsum",
    "for m in messages",
    "endfor",
    "if",
    "endif",
    "set x =",
    "macro f(n)",
    "endmacro",
    "f(1)",
    "include",
    "\n",
]
ATOMS = st.sampled_from(
    ["messages", "m", "x", "ns", "loop", "tools", "none", "'a'", "'__class__'", "'{0.__class__}'"]
    + ["1", "9", "[1, 'b']", "{'a': 1}", "namespace(a=1)", "range(3)", "lipsum", "cycler"]
)
NAMES = st.sampled_from(["content", "role", "a", "index", "items", "__class__", "_x", "mro"])
FILTERS = st.sampled_from(
    ["upper", "tojson", "join", "length", "list", "first", "string", "trim", "int", "sum"]
    + ["attr('__class__')", "attr(x)", "map('upper')", "selectattr('role')", "batch(2)"]
)
OPERATORS = st.sampled_from(["~", "+", "*", "%", "**", "==", "in", "and"])
EXPRESSIONS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.builds("{}.{}".format, inner, NAMES),
        st.builds("{}[{}]".format, inner, inner),
        st.builds("{}|{}".format, inner, FILTERS),
        st.builds("({} {} {})".format, inner, OPERATORS, inner),
        st.builds("{}({})".format, inner, inner),
    ),
    max_leaves=6,
)
STATEMENTS = st.one_of(
    st.builds("{{{{ {} }}}}".format, EXPRESSIONS),
    st.builds("{{% set x = {} %}}".format, EXPRESSIONS),
    st.builds("{{% set ns = namespace(a={}) %}}{{% set ns.a = ns.a ~ 1 %}}".format, EXPRESSIONS),
    st.builds("{{% for m in {} %}}{{{{ {} }}}}{{% endfor %}}".format, EXPRESSIONS, EXPRESSIONS),
    st.builds(
        "{{% if {} %}}y{{% else %}}{{{{ {} }}}}{{% endif %}}".format, EXPRESSIONS, EXPRESSIONS
    ),
    st.sampled_from(FRAGMENTS),
    st.text(max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(STATEMENTS, max_size=6))
def test_any_template_text_gives_findings_or_unverified(parts: list[str]) -> None:
    # check_template's steps, the trial render in this process: a child per example would
    # make this test twenty times slower; test_template_trial.py tests the child.
    source = "".join(parts)
    try:
        findings = templates._static(source, file="fuzz", location=WHERE, before=[])
        if not any(f.severity is Severity.CRITICAL for f in findings):
            findings += trial_render(
                source,
                file="fuzz",
                location=WHERE,
                seconds=templates.TRIAL_SECONDS,
                max_chars=templates.TRIAL_MAX_CHARS,
            )
    except Unverified as err:
        assert err.reason
        return
    assert all(isinstance(f, Finding) and f.location.startswith(WHERE) for f in findings)
