import { render } from "preact";

import { App } from "./app";
import { FakeBackend, makeCard } from "./fake-backend";
import "./styles.css";
import { tauriBackend } from "./tauri-backend";

// Inside the shell the Tauri backend; opened in a plain browser (`npm run dev`), a fake fleet
// so views can be worked on without the shell.
const inTauri = "__TAURI_INTERNALS__" in window;
const backend = inTauri
  ? tauriBackend()
  : new FakeBackend(Array.from({ length: 24 }, (_, i) => makeCard(i + 1)));

const root = document.getElementById("app");
if (root) render(<App backend={backend} />, root);
