/** Error codes: E_FETCH, E_TRUNCATED, E_FORMAT, E_SHAPE, E_CONFIG, E_TOKENIZER, E_IMAGE, E_INPUT, E_BACKEND, E_INTERNAL. */
export type WebclipErrorCode =
  | 'E_FETCH' | 'E_TRUNCATED' | 'E_FORMAT' | 'E_SHAPE' | 'E_CONFIG' | 'E_TOKENIZER'
  | 'E_IMAGE' | 'E_INPUT' | 'E_BACKEND' | 'E_IO' | 'E_INTERNAL';

export class WebclipError extends Error {
  readonly code: WebclipErrorCode;
}

export type Device = 'webgpu' | 'cpu';

/** Progress of one file: `loaded` grows monotonically up to `total` (bytes). */
export interface ProgressEvent {
  file: string;
  loaded: number;
  total: number;
}

export interface LoadOptions {
  /** 'auto' (default) uses WebGPU when an adapter is available, else the CPU. */
  device?: 'auto' | Device;
  onProgress?: (event: ProgressEvent) => void;
  /** Keep complete files in the Cache API (default true). */
  cache?: boolean;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

/** Raw RGBA pixels, e.g. from a canvas. */
export interface RgbaImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/** Anything webclip can read an image from. A string is fetched as a URL. */
export type ImageSource =
  | HTMLCanvasElement | OffscreenCanvas | ImageData | HTMLImageElement | ImageBitmap | HTMLVideoElement
  | Blob | ArrayBuffer | ArrayBufferView | RgbaImage | string;

/** A file given in memory. */
export type FileInput = string | Uint8Array | ArrayBuffer | Blob | Response;

export interface ClassifyOptions {
  /** One prompt template (default `'a photo of a {}.'`). */
  template?: string;
  /** Several templates (overrides `template`). */
  templates?: string[];
  /**
   * `'mean'` (default): average each label's prompt embeddings, as in the CLIP paper; suits
   * paraphrases. `'probability'`: a softmax over every prompt, summed per label; suits
   * templates that describe different images ("a red {} on the left", "a blue {} at the top").
   */
  ensemble?: 'mean' | 'probability';
}

export interface LabelScore {
  label: string;
  score: number;
}

export interface RankHit {
  index: number;
  score: number;
}

export class Clip {
  /** Load a Hugging Face style directory (e.g. `https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/`). */
  static fromPretrained(baseUrl: string, options?: LoadOptions): Promise<Clip>;
  /** Load from in-memory files. */
  static fromFiles(
    files: { config: FileInput; weights: FileInput; tokenizer: FileInput; preprocessor?: FileInput | null },
    options?: { device?: 'auto' | Device },
  ): Promise<Clip>;
  /** The device actually in use. */
  readonly device: Device;
  /** Size of the shared embedding space. */
  readonly embeddingDim: number;
  /** L2-normalized image embeddings. */
  embedImages(sources: ImageSource | ImageSource[]): Promise<Float32Array[]>;
  /** L2-normalized text embeddings. */
  embedTexts(texts: string | string[]): Promise<Float32Array[]>;
  /**
   * Zero-shot classification: `[{label, score}]`, scores summing to 1, best first. `{}` in a
   * template is the label. Several templates, or alternatives written `(a|b)` inside one, make a
   * template ensemble, combined as `ensemble` says.
   */
  classify(
    source: ImageSource,
    labels: string[],
    options?: ClassifyOptions,
  ): Promise<LabelScore[]>;
  /** Rank embeddings by similarity to a text query, best first. */
  rank(query: string, embeddings: Float32Array[], options?: { topk?: number }): Promise<RankHit[]>;
  /** Token ids of a text. */
  tokenize(text: string): number[];
  /** Free wasm and GPU memory. */
  dispose(): void;
}

/** Delete every cached model file. */
export function clearCache(): Promise<void>;

/**
 * Bytes of WebAssembly memory in use by webclip (0 before the first model loads). Wasm memory
 * only grows, so after a load this is the peak of the load; on the CPU device it holds the weights.
 */
export function wasmMemoryBytes(): number;
