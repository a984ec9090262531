"""owl.engine.llama.sampler: the repetition penalties' history and a grammar in one chain."""

from __future__ import annotations

import json

from owl.engine.grammar import json_grammar


def test_a_penalised_generation_keeps_its_grammar_from_the_prompt(shared_model) -> None:
    # The prompt's tokens once went to the whole chain, grammar included: llama.cpp then
    # aborted the process ("Unexpected empty grammar stack") instead of generating.
    schema = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    params = shared_model.sampling(
        temperature=0.0, repeat_penalty=1.1, max_tokens=32, grammar=json_grammar(schema)
    )
    messages = [{"role": "user", "content": 'Answer with JSON {"word": ...}: a word for owl.'}]
    with shared_model.chat(messages, params) as deltas:
        text = "".join(delta.text for delta in deltas)
    assert isinstance(json.loads(text)["word"], str)
