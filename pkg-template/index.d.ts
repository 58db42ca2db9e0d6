// Types for webclip-wasm. They compile with and without the DOM library: browser types are
// looked up on `globalThis` and become `never` where they do not exist (e.g. in Node).

/** A global class's instance type, or `never` where the global does not exist. */
type GlobalInstance<K extends string> = typeof globalThis extends { [P in K]: { prototype: infer T } } ? T : never;

type Blob_ = GlobalInstance<'Blob'>;
type Response_ = GlobalInstance<'Response'>;
type AbortSignal_ = GlobalInstance<'AbortSignal'>;
type URL_ = GlobalInstance<'URL'>;

/** Error codes: from Rust (E_CONFIG ... E_MEMORY) and from the wrapper (E_FETCH, E_ABORTED, E_INTERNAL). */
export type WebclipErrorCode =
  | 'E_FETCH' | 'E_TRUNCATED' | 'E_FORMAT' | 'E_SHAPE' | 'E_CONFIG' | 'E_TOKENIZER'
  | 'E_IMAGE' | 'E_INPUT' | 'E_BACKEND' | 'E_IO' | 'E_MEMORY' | 'E_ABORTED' | 'E_INTERNAL';

export class WebclipError extends Error {
  readonly code: WebclipErrorCode;
}

export type Device = 'webgpu' | 'cpu';

/** Progress of one model file: `loaded` grows monotonically up to `total` (bytes). */
export interface ProgressEvent {
  file: string;
  loaded: number;
  total: number;
}

/** Progress of a call on many images. */
export interface BatchProgress {
  done: number;
  total: number;
}

/** Bounds on the images a model accepts (over them: E_IMAGE). */
export interface ImageLimits {
  /** Largest width or height in pixels. */
  maxSide: number;
  /** Largest decoded image in bytes. */
  maxBytes: number;
}

export interface FilesOptions {
  /** 'auto' (default) uses WebGPU when a hardware adapter is available, else the CPU. */
  device?: 'auto' | Device;
  /** Where the runtime `webclip_wasm_bg.wasm` is served (default: next to this module). */
  wasmUrl?: string | URL_;
  imageLimits?: ImageLimits;
}

export interface LoadOptions extends FilesOptions {
  onProgress?: (event: ProgressEvent) => void;
  /** Keep complete files in the Cache API (default true). */
  cache?: boolean;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: (url: string, init?: { signal?: AbortSignal_ }) => Promise<Response_>;
  /** Cancels the load (rejects with E_ABORTED; nothing is cached). */
  signal?: AbortSignal_;
  /** Hub ids only: branch, tag or commit (default 'main'). */
  revision?: string;
  /** Hub ids only: the Hub or a mirror (default 'https://huggingface.co'). */
  hubUrl?: string | URL_;
}

/** Raw RGBA pixels, e.g. from a canvas: `data.length === width * height * 4`. */
export interface RgbaImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/** Anything webclip can read an image from. A string is fetched as a URL. */
export type ImageSource =
  | GlobalInstance<'HTMLCanvasElement'> | GlobalInstance<'OffscreenCanvas'> | GlobalInstance<'ImageData'>
  | GlobalInstance<'HTMLImageElement'> | GlobalInstance<'ImageBitmap'> | GlobalInstance<'HTMLVideoElement'>
  | Blob_ | ArrayBuffer | ArrayBufferView | RgbaImage | string;

/** A file given in memory. */
export type FileInput = string | Uint8Array | ArrayBuffer | Blob_ | Response_;

export interface ClassifyOptions {
  /** One prompt template; `{}` is the label (default: CLIP's `'a photo of a {}.'`). */
  template?: string;
  /** Several templates (overrides `template`); one string is one template. */
  templates?: string | string[];
  /**
   * `'mean'` (default): average each label's prompt embeddings, as in the CLIP paper; suits
   * paraphrases. `'probability'`: a softmax over every prompt, summed per label; suits
   * templates that describe different images ("a red {} on the left", "a blue {} at the top").
   */
  ensemble?: 'mean' | 'probability';
  /** Called after each image when classifying an array. */
  onProgress?: (event: BatchProgress) => void;
}

export interface EmbedImagesOptions {
  /** Images read and embedded per step (default 8); the page gets control between steps. */
  batchSize?: number;
  onProgress?: (event: BatchProgress) => void;
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
  private constructor();
  /**
   * Load a CLIP or SigLIP model: a Hub id (`'openai/clip-vit-base-patch32'`) or the URL of a
   * directory, absolute or (in a page) relative: a Hugging Face one (config.json,
   * model.safetensors, tokenizer.json (SigLIP: or spiece.model), optionally
   * tokenizer_config.json and preprocessor_config.json) or open_clip's hub layout
   * (open_clip_config.json, open_clip_model.safetensors, tokenizer.json).
   */
  static fromPretrained(model: string | URL_, options?: LoadOptions): Promise<Clip>;
  /**
   * Load from in-memory files (`config` may be open_clip's open_clip_config.json; `tokenizer`
   * a tokenizer.json or SigLIP's spiece.model).
   */
  static fromFiles(
    files: {
      config: FileInput;
      weights: FileInput;
      tokenizer: FileInput;
      tokenizerConfig?: FileInput | null;
      preprocessor?: FileInput | null;
    },
    options?: FilesOptions,
  ): Promise<Clip>;
  /** The device in use. */
  readonly device: Device;
  /** Why that device was chosen. */
  readonly deviceReason: string;
  /** Size of the shared embedding space. */
  readonly embeddingDim: number;
  /**
   * How `classify` scores: `'softmax'` (CLIP: scores sum to 1 across the labels) or
   * `'sigmoid'` (SigLIP: each label's own probability, independent of the others).
   */
  readonly scoring: 'softmax' | 'sigmoid';
  /** L2-normalized image embeddings, one per source. */
  embedImages(sources: ImageSource | ImageSource[], options?: EmbedImagesOptions): Promise<Float32Array[]>;
  /** L2-normalized text embeddings, one per text. */
  embedTexts(texts: string | string[]): Promise<Float32Array[]>;
  /**
   * Zero-shot classification: `[{label, score}]`, best first (scores summing to 1, or for
   * SigLIP independent probabilities: see `scoring`); for an array of images, one such list
   * per image. Several templates, or alternatives written
   * `(a|b)` inside one, make a template ensemble, combined as `ensemble` says.
   */
  classify(image: ImageSource, labels: string[], options?: ClassifyOptions): Promise<LabelScore[]>;
  classify(images: ImageSource[], labels: string[], options?: ClassifyOptions): Promise<LabelScore[][]>;
  /** Rank embeddings by similarity to a text query, best first. */
  rank(query: string, embeddings: ArrayLike<number>[], options?: { topk?: number }): Promise<RankHit[]>;
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
