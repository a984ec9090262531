// Conversations kept in this browser (IndexedDB): nothing about them is sent to the server
// but the messages of the request being made.
const DB = "owl";
const STORE = "conversations";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(STORE, mode);
    const request = work(transaction.objectStore(STORE));
    transaction.oncomplete = () => { db.close(); resolve(request?.result); };
    transaction.onerror = () => { db.close(); reject(transaction.error); };
  });
}

/** Every conversation, the most recently changed first. */
export async function conversations() {
  const all = await run("readonly", (store) => store.getAll());
  return all.sort((a, b) => b.updated - a.updated);
}

export function save(conversation) {
  conversation.updated = Date.now();
  return run("readwrite", (store) => store.put(conversation));
}

export function remove(id) {
  return run("readwrite", (store) => store.delete(id));
}

export function newConversation() {
  // Not crypto.randomUUID: it exists only in secure contexts, and a LAN address over http is not one.
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return { id, title: "New chat", messages: [], updated: Date.now() };
}
