// Speech in the chat: audio recorded here or uploaded goes to /v1/audio/transcriptions and its
// text into the prompt box; an answer goes to /v1/audio/speech and is played back. Each with
// the stored model that does it ("transcribe", "speak"), or a reason when none is stored.
import { api, errorText, postJson } from "./api.js";

const $ = (id) => document.getElementById(id);
const EXTENSIONS = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/wav": "wav" };
const NO_STT = "No speech-to-text model is stored: pull one (a Whisper model) to transcribe audio.";
const NO_TTS = "No text-to-speech model is stored: pull a Piper voice to read answers aloud.";
let speakReason = NO_TTS;
let recorder = null;
let onText = () => {};

function say(text) {
  $("voice-status").textContent = text;
}

/** Fill `select` with `names`; shown only when there is a choice to make. */
function fill(select, names) {
  const chosen = select.value;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  if (names.includes(chosen)) select.value = chosen;
  select.closest("label").hidden = names.length < 2;
}

/** The stored models that transcribe and speak, by name (capabilities.js's `able`). */
export function setVoiceModels({ transcribe, speak }) {
  fill($("stt-model"), transcribe);
  fill($("tts-model"), speak);
  const hearReason = transcribe.length ? "" : NO_STT;
  const recordReason = hearReason || (navigator.mediaDevices?.getUserMedia && window.MediaRecorder
    ? "" : "Recording needs a secure page (https or localhost) and a microphone; upload an audio file instead.");
  for (const [id, why, idle] of [["record", recordReason, "Record"], ["upload-audio", hearReason, "Audio file"]]) {
    $(id).disabled = Boolean(why);
    $(id).title = why || `${idle}: its words go into the message box`;
  }
  speakReason = speak.length ? "" : NO_TTS;
  say([hearReason, speakReason].filter(Boolean).join(" "));
}

async function transcribe(audio, filename) {
  const model = $("stt-model").value;
  const form = new FormData();
  form.append("file", audio, filename);
  form.append("model", model);
  form.append("response_format", "json");
  say(`Transcribing with ${model}…`);
  $("voice-status").dataset.state = "transcribing";
  try {
    const response = await api("/v1/audio/transcriptions", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    const text = ((await response.json()).text || "").trim();
    if (text) onText(text);
    say(text ? `Transcribed by ${model}.` : `${model} heard no words in that audio.`);
  } catch (error) {
    say(`Transcription failed: ${error.message || error}`);
  } finally {
    $("voice-status").dataset.state = "idle";
  }
}

async function toggleRecording() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    say(`No microphone: ${error.message || error}. Upload an audio file instead.`);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => {
    if (!event.data.size) return;
    chunks.push(event.data);
    button.dataset.recorded = "true"; // some audio is in: stopping now sends something
  });
  recorder.addEventListener("stop", () => {
    const type = recorder.mimeType.split(";")[0] || "audio/webm";
    recorder = null;
    for (const track of stream.getTracks()) track.stop();
    button.textContent = "Record";
    button.removeAttribute("aria-pressed");
    delete button.dataset.recorded;
    if (!chunks.length) return say("Nothing was recorded.");
    transcribe(new Blob(chunks, { type }), `recording.${EXTENSIONS[type] || "webm"}`);
  });
  recorder.start(250); // in slices, so that a short recording has data when it stops
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  say("Recording… press Stop recording to transcribe.");
}

/** A "Read aloud" button for an answer; `text()` gives the words to say when it is pressed. */
export function readAloudButton(text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "read-aloud";
  button.textContent = "Read aloud";
  button.disabled = Boolean(speakReason);
  button.title = speakReason || "Read this answer aloud";
  button.addEventListener("click", async () => {
    const model = $("tts-model").value;
    button.disabled = true;
    say(`Speaking with ${model}…`);
    try {
      const body = { model, input: text(), response_format: "wav" };
      const response = await postJson("/v1/audio/speech", body);
      if (!response.ok) throw new Error(await errorText(response));
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = URL.createObjectURL(await response.blob());
      const previous = button.nextElementSibling;
      if (previous?.tagName === "AUDIO") {
        URL.revokeObjectURL(previous.src);
        previous.remove();
      }
      button.after(audio);
      say(`Read aloud by ${model}.`);
      // A page may not play without a gesture that is recent enough; the controls remain.
      audio.play().catch(() => {});
    } catch (error) {
      say(`Reading aloud failed: ${error.message || error}`);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** Wire the recorder and the audio upload; `insert(text)` puts a transcript into the prompt. */
export function startVoice(insert) {
  onText = insert;
  $("record").addEventListener("click", toggleRecording);
  const input = $("audio-file");
  $("upload-audio").addEventListener("click", () => input.click());
  input.addEventListener("change", async () => {
    const file = input.files[0];
    input.value = "";
    if (file) await transcribe(file, file.name);
  });
}
