// Starts the app's wasm. A file rather than trunk's inline snippet, so the
// Content-Security-Policy can forbid inline scripts.
import init from './app.js';
await init({ module_or_path: './app_bg.wasm' });
