// What each stored model does: /api/tags names the models (and which are LoRA adapters, on
// which base), /api/show says what each is made for (completion, vision, transcribe, speak,
// embedding, draw). /v1/models alone lists speech and image models as if they chatted.
import { api, errorText, postJson } from "./api.js";

const ADAPTER = "lora adapter"; // /api/tags' details.family for an adapter: "lora adapter of BASE"

function shortName(name) {
  return name.replace(/:latest$/, ""); // as /v1/models and the chat requests name it
}

async function capabilitiesOf(name) {
  const response = await postJson("/api/show", { model: name });
  if (!response.ok) return new Set(); // unreadable: offered for nothing rather than failing all
  return new Set((await response.json()).capabilities || []);
}

/**
 * Every stored model as {name, capabilities: Set, adapterOf}: adapterOf is the base's name
 * for a LoRA adapter ("" when it records none) and null for any other model.
 */
export async function storedModels() {
  const response = await api("/api/tags");
  if (!response.ok) throw new Error(await errorText(response));
  const models = (await response.json()).models || [];
  return Promise.all(
    models.map(async (model) => {
      const family = model.details?.family || "";
      const adapterOf = family.startsWith(ADAPTER) ? shortName(model.details.parent_model || "") : null;
      return { name: shortName(model.name), capabilities: await capabilitiesOf(model.name), adapterOf };
    }),
  );
}

/** The names of the models that can do `capability`. */
export function able(models, capability) {
  return models.filter((model) => model.capabilities.has(capability)).map((model) => model.name);
}
