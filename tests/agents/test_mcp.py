"""owl.agents.mcp against a real MCP server (tests/support/mcp_server.py) over stdio and HTTP."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from owl.agents.mcp import McpServerError, McpTools
from owl.config import Settings
from owl.errors import OwlError
from tests.support.mcp_server import SECRET_WORD, STDIO_COMMAND, http_mcp_server


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with http_mcp_server() as url:
        yield url


def test_stdio_server_lists_its_tools_with_their_schemas() -> None:
    with McpTools.open([STDIO_COMMAND]) as tools:
        by_name = {function["name"]: function for function in tools.functions}
        assert set(by_name) == {"add", "secret_word", "fail"}
        assert by_name["add"]["description"] == "Add two integers."
        assert by_name["add"]["parameters"]["required"] == ["a", "b"]
        assert by_name["add"]["parameters"]["properties"]["a"]["type"] == "integer"


def test_stdio_server_runs_calls() -> None:
    with McpTools.open([STDIO_COMMAND]) as tools:
        assert tools.call("add", {"a": 2, "b": 40}) == "42"
        assert tools.call("secret_word", {}) == SECRET_WORD
        assert tools.call("secret_word", None) == SECRET_WORD


def test_a_failing_tool_says_so_in_its_result() -> None:
    with McpTools.open([STDIO_COMMAND]) as tools:
        assert tools.call("fail", {"reason": "broken on purpose"}).startswith("Error: ")


def test_an_unknown_tool_is_an_error_result_naming_the_tools() -> None:
    with McpTools.open([STDIO_COMMAND]) as tools:
        result = tools.call("nope", {})
    assert result.startswith("Error: ") and "secret_word" in result


def test_http_server_lists_and_runs_tools(http_url: str) -> None:
    with McpTools.open([http_url]) as tools:
        assert {function["name"] for function in tools.functions} == {"add", "secret_word", "fail"}
        assert tools.call("add", {"a": -3, "b": 5}) == "2"


def test_clashing_tool_names_get_the_server_prefix(http_url: str) -> None:
    with McpTools.open([http_url, STDIO_COMMAND]) as tools:
        names = [function["name"] for function in tools.functions]
        assert len(names) == len(set(names)) == 6
        assert "owl-test-tools_add" in names
        # Both names reach a server that adds.
        assert tools.call("add", {"a": 1, "b": 1}) == tools.call(
            "owl-test-tools_add", {"a": 1, "b": 1}
        )


def test_a_command_that_does_not_exist_is_a_clear_error() -> None:
    with pytest.raises(McpServerError) as caught:
        McpTools.open(["owl-no-such-mcp-server --port 1"])
    assert isinstance(caught.value, OwlError)
    assert "owl-no-such-mcp-server" in str(caught.value)
    assert "check the command" in str(caught.value)


def test_a_server_that_exits_at_once_is_a_clear_error_with_its_stderr() -> None:
    command = f"{sys.executable} -c \"import sys; sys.exit('no tools today')\""
    with pytest.raises(McpServerError) as caught:
        McpTools.open([command])
    assert "no tools today" in str(caught.value)


def test_an_unreachable_url_is_a_clear_error() -> None:
    with pytest.raises(McpServerError, match="127.0.0.1:9"):
        McpTools.open(["http://127.0.0.1:9/mcp"])


def test_bad_specs_are_refused() -> None:
    with pytest.raises(McpServerError, match="not a valid command line"):
        McpTools.open(['python "unclosed'])
    with pytest.raises(McpServerError, match="empty"):
        McpTools.open(["   "])


def test_owl_mcp_servers_splits_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWL_MCP_SERVERS", " python s.py --x , http://x/mcp ,, ")
    assert Settings().mcp_servers == ["python s.py --x", "http://x/mcp"]
