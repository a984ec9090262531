"""The chat page's media and models, in a real chromium against a real `owl serve` holding the
bundled models, the tiny SmolVLM, a tiny LoRA adapter on a tiny llama, and a tiny wav2vec2:
the picker offers what chats (adapters too), an image goes to the vision model as an image_url
part and stays in the conversation, audio uploaded or recorded (chromium's fake microphone)
comes back as text in the prompt box, an answer is read aloud, JSON-schema mode answers JSON,
and without speech models the page says why it cannot hear or speak."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from owl.engine.audio import decode_audio
from tests.support.cli import owl
from tests.support.owl_server import Server, running_server
from tests.support.speech_files import share_heard, spoken
from tests.support.tiny_lora import ADAPTER, BASE, tiny_lora
from tests.support.tiny_vlm import IMAGE_SIZE, shared_tiny_vlm
from tests.support.tiny_wav2vec2 import build_tiny_wav2vec2, reference_transcript
from tests.ui.conftest import CHROMIUM, READY, UiPage, open_page

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs"
ANSWER = "#messages .message.assistant"
# Chromium's own stand-ins: a microphone that beeps, and permission granted without a prompt.
FAKE_MEDIA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
BLOB = re.compile(r"^blob:http://127\.0\.0\.1:\d+/")  # audio the page itself made
SENTENCE = "Please send the quarterly report to the finance team before Friday afternoon."


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_wav2vec2(tmp_path_factory.mktemp("ui-w2v") / "tiny-wav2vec2")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path, wav2vec2: Path
) -> Iterator[Server]:
    """This module's own server (the last test removes its speech models)."""
    root = tmp_path_factory.mktemp("ui-media")
    base = tmp_path_factory.getbasetemp()
    tiny_lora(base, root / "owl-home", bundled_gguf)  # tiny-llama:f16 and its adapter
    with running_server(root) as running:
        made = shared_tiny_vlm(base, bundled_gguf)
        for args in (
            (str(made.model), "--mmproj", str(made.projector), "--name", "vlm"),
            (str(wav2vec2), "--name", "w2v"),
        ):
            pulled = owl(running.home, "pull", *args)
            assert pulled.returncode == 0, pulled.stderr
        yield running


@pytest.fixture(scope="module")
def media_browser(browser: object) -> Iterator[object]:
    launched = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", *FAKE_MEDIA]
    )
    yield launched
    launched.close()


@pytest.fixture
def ui(media_browser: object, server: Server) -> Iterator[UiPage]:
    pages = open_page(media_browser, server.base, permissions=["microphone"])
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    yield ui
    assert not ui.errors, ui.errors
    next(pages, None)


@pytest.fixture(scope="module")
def red_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (200, 0, 0)).save(buffer, format="PNG")
    path = tmp_path_factory.mktemp("ui-images") / "red.png"
    path.write_bytes(buffer.getvalue())
    return path


def ask(ui: UiPage, model: str, text: str, *, max_tokens: int = 8) -> dict:
    """Send `text` to `model`; the request's JSON body, once the answer is done."""
    page = ui.page
    page.select_option("#model", model)
    page.fill("#temperature", "0")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", text)
    with page.expect_request("**/v1/chat/completions") as request:
        page.press("#prompt", "Enter")
    page.wait_for_selector("#chat-status:text('Done.')")
    return request.value.post_data_json


def attach(ui: UiPage, image: Path) -> None:
    ui.page.select_option("#model", "vlm")
    ui.page.set_input_files("#image-file", str(image))
    ui.page.wait_for_selector("#attachments img")


def test_the_picker_offers_chat_models_and_adapters_only(ui: UiPage) -> None:
    page = ui.page
    offered = page.eval_on_selector_all(
        "#model optgroup", "groups => groups.map(g => [g.label, [...g.children].map(o => o.value)])"
    )
    assert dict(offered) == {
        "chat models": sorted(["smollm2", f"{BASE}:f16", "vlm"]),
        "adapters": [ADAPTER],
    }  # never whisper, w2v or piper-joe
    assert page.locator(f"#model option[value='{ADAPTER}']").inner_text() == (
        f"{ADAPTER} (adapter on {BASE}:f16)"
    )
    assert "sees images" in page.locator("#model option[value='vlm']").inner_text()
    ask(ui, ADAPTER, "Hello")  # the adapter answers, on its recorded base
    assert page.locator(f"{ANSWER}:not(.error) .content").last.inner_text().strip()


def test_an_image_goes_to_the_vision_model_and_stays_with_the_conversation(
    ui: UiPage, red_png: Path
) -> None:
    page = ui.page
    page.select_option("#model", "smollm2")
    assert page.is_disabled("#attach")
    assert "does not see images" in page.get_attribute("#attach", "title")
    attach(ui, red_png)
    body = ask(ui, "vlm", "What is it?", max_tokens=4)
    image, text = body["messages"][-1]["content"]
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert text == {"type": "text", "text": "What is it?"}
    assert page.locator("#attachments img").count() == 0  # sent: the composer is empty again
    thumbnail = page.locator("#messages .message.user .thumbnails img")
    assert thumbnail.get_attribute("src") == image["image_url"]["url"]
    assert page.locator(f"{ANSWER}.error").count() == 0

    page.reload()  # kept in IndexedDB with the conversation
    page.wait_for_selector(READY)
    expect(thumbnail).to_have_attribute("src", image["image_url"]["url"])
    # A text model is sent the words alone: it would refuse the image.
    later = ask(ui, "smollm2", "And now?", max_tokens=4)
    assert [message["content"] for message in later["messages"]][0] == "What is it?"


def test_uploaded_audio_is_transcribed_into_the_prompt(
    ui: UiPage, tmp_path: Path, wav2vec2: Path
) -> None:
    page = ui.page
    wav = spoken(SENTENCE, tmp_path / "sentence.wav")
    expect(page.locator("#stt-model")).to_be_visible()  # two speech-to-text models: a choice
    page.select_option("#stt-model", "whisper")
    page.fill("#prompt", "Summarise:")
    with page.expect_response("**/v1/audio/transcriptions") as response:
        page.set_input_files("#audio-file", str(wav))
    assert response.value.status == 200
    page.wait_for_selector("#voice-status:text('Transcribed by whisper.')")
    prompt = page.input_value("#prompt")
    assert prompt.startswith("Summarise: ")
    assert share_heard(SENTENCE, prompt) >= 0.6, prompt

    page.fill("#prompt", "")
    page.select_option("#stt-model", "w2v")
    with page.expect_response("**/v1/audio/transcriptions") as response:
        page.set_input_files("#audio-file", str(wav))
    assert response.value.status == 200
    expect(page.locator("#voice-status")).to_have_attribute("data-state", "idle")
    samples = decode_audio(wav, max_seconds=60, max_bytes=10 << 20)
    assert page.input_value("#prompt") == reference_transcript(wav2vec2, samples).strip()


def test_a_recording_from_the_microphone_is_transcribed(ui: UiPage) -> None:
    page = ui.page
    page.select_option("#stt-model", "whisper")
    page.click("#record")
    page.wait_for_selector("#record[data-recorded=true]")  # some audio has come in
    with page.expect_response("**/v1/audio/transcriptions") as response:
        page.click("#record")
    assert response.value.status == 200
    expect(page.locator("#voice-status")).to_have_attribute("data-state", "idle")
    heard = page.input_value("#prompt")  # chromium's fake microphone beeps: words or none
    expected = "Transcribed by whisper." if heard else "whisper heard no words in that audio."
    assert page.inner_text("#voice-status") == expected


def test_an_answer_is_read_aloud(ui: UiPage, red_png: Path) -> None:
    page = ui.page
    attach(ui, red_png)
    ask(ui, "vlm", "What is it?", max_tokens=4)
    ask(ui, "smollm2", "Say hello to the user.", max_tokens=16)
    with page.expect_response("**/v1/audio/speech") as response:
        page.locator(f"{ANSWER} .read-aloud").last.click()
    assert response.value.status == 200
    assert response.value.headers["content-type"] == "audio/wav"
    spoken_text = response.value.request.post_data_json["input"]
    assert spoken_text == page.locator(f"{ANSWER} .content").last.inner_text()
    audio = page.locator(f"{ANSWER} audio").last
    expect(audio).to_have_attribute("src", BLOB)
    # The blob is audio that plays (its length is known): the CSP lets the page load it.
    page.wait_for_function("() => document.querySelector('#messages audio').duration > 0")
    page.set_viewport_size({"width": 1100, "height": 900})
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "ui-chat-media.png"), full_page=True)


def test_json_schema_mode_answers_json_and_refuses_bad_schemas(ui: UiPage) -> None:
    page = ui.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/chat/" in r.url else None)
    page.fill("#schema", '{"type": "object", ')
    page.fill("#prompt", "Is the sky blue?")
    page.press("#prompt", "Enter")
    expect(page.locator("#schema-error")).to_contain_text("not valid JSON")
    page.fill("#schema", "[1, 2]")
    page.press("#prompt", "Enter")
    expect(page.locator("#schema-error")).to_contain_text("must be a JSON object")
    assert not sent and page.input_value("#prompt") == "Is the sky blue?"  # nothing was sent

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "boolean"}},
        "required": ["answer"],
    }
    page.fill("#schema", json.dumps(schema))
    body = ask(ui, "smollm2", "Is the sky blue?", max_tokens=64)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    answer = json.loads(page.locator(f"{ANSWER} .content pre.json").last.inner_text())
    assert set(answer) == {"answer"} and isinstance(answer["answer"], bool)
    assert page.inner_text("#schema-error") == ""


def test_without_speech_models_the_page_says_why(ui: UiPage, server: Server) -> None:
    # Last in the module: it removes the server's speech models.
    for name in ("whisper", "w2v", "piper-joe"):
        removed = httpx.request("DELETE", f"{server.base}/api/delete", json={"model": name})
        assert removed.status_code == 200, removed.text
    page = ui.page
    page.reload()
    page.wait_for_selector(READY)
    for button in ("#record", "#upload-audio"):
        assert page.is_disabled(button)
        assert "No speech-to-text model is stored" in page.get_attribute(button, "title")
    status = page.inner_text("#voice-status")
    assert "No speech-to-text model is stored" in status
    assert "No text-to-speech model is stored" in status
    assert not page.is_visible("#stt-model") and not page.is_visible("#tts-model")
    ask(ui, "smollm2", "Hi", max_tokens=4)
    read = page.locator(f"{ANSWER} .read-aloud").last
    assert read.is_disabled()
    assert "No text-to-speech model is stored" in read.get_attribute("title")
