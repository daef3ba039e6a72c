// The one way the dashboard talks to the REST API: same-origin session cookies,
// the CSRF token on unsafe methods, and the API's error body turned into ApiError.

export const API_BASE = "/api/v1";

export type FieldErrors = Record<string, string[]>;

/** The API's error body: {"error": {"code", "message", "fields"}}. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: FieldErrors;

  constructor(status: number, code: string, message: string, fields: FieldErrors = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
  }

  /** Errors for one form field, e.g. error.fieldErrors("name"). */
  fieldErrors(name: string): string[] | undefined {
    return this.fields[name];
  }
}

export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

/** The reasons for one field of a failed mutation, or undefined. */
export function fieldError(error: unknown, name: string): string[] | undefined {
  return isApiError(error) ? error.fields[name] : undefined;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function readCookie(name: string): string | undefined {
  const prefix = `${name}=`;
  for (const part of document.cookie.split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
  }
  return undefined;
}

let csrfRequest: Promise<void> | null = null;

/** Makes sure the readable csrftoken cookie exists (Django sets it on GET /auth/csrf/). */
export async function ensureCsrfToken(): Promise<string> {
  let token = readCookie("csrftoken");
  if (token) return token;
  csrfRequest ??= fetch(`${API_BASE}/auth/csrf/`, { credentials: "same-origin" }).then(
    () => undefined,
    () => undefined,
  );
  await csrfRequest;
  csrfRequest = null;
  token = readCookie("csrftoken");
  if (!token) {
    throw new ApiError(0, "csrf_unavailable", "The server did not hand out a CSRF token; reload the page.");
  }
  return token;
}

async function errorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown;
  const text = await response.text().catch(() => "");
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const err =
    body && typeof body === "object" && "error" in body
      ? (body as { error: { code?: string; message?: string; fields?: FieldErrors } }).error
      : null;
  if (err) {
    return new ApiError(
      response.status,
      err.code ?? `http_${response.status}`,
      err.message ?? response.statusText,
      err.fields ?? {},
    );
  }
  const fallback: Record<number, string> = {
    401: "You are signed out. Sign in again.",
    403: "You do not have permission to do this.",
    404: "Not found.",
    413: "The upload is larger than the server accepts.",
    429: "Too many requests; wait a moment and try again.",
  };
  return new ApiError(
    response.status,
    `http_${response.status}`,
    fallback[response.status] ??
      `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".",
  );
}

export interface RequestOptions {
  method?: string;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (multipart uploads). */
  body?: FormData;
  query?: Record<string, string | number | boolean | undefined | null | (string | number)[]>;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

export function buildUrl(path: string, query?: RequestOptions["query"]): string {
  const url = path.startsWith("/") ? path : `${API_BASE}/${path}`;
  if (!query) return url;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, String(v)));
    else params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${url}${url.includes("?") ? "&" : "?"}${qs}` : url;
}

/** Sends a request and returns the raw Response after checking its status. */
export async function apiResponse(path: string, options: RequestOptions = {}): Promise<Response> {
  const method = (options.method ?? (options.json !== undefined || options.body ? "POST" : "GET")).toUpperCase();
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  if (UNSAFE.has(method)) headers["X-CSRFToken"] = await ensureCsrfToken();
  let body: BodyInit | undefined;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.body) {
    body = options.body;
  }
  let response: Response;
  try {
    response = await fetch(buildUrl(path, options.query), {
      method,
      headers,
      body,
      credentials: "same-origin",
      signal: options.signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
    throw new ApiError(0, "network", "Cannot reach the server. Check that TinyForge is running.");
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

/** Sends a request and parses the JSON answer (undefined for 204). */
export async function apiFetch<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await apiResponse(path, options);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

/**
 * Multipart upload with progress events. fetch() cannot report upload progress,
 * so this one call uses XMLHttpRequest; errors come back as the same ApiError.
 */
export async function uploadWithProgress<T>(
  path: string,
  form: FormData,
  onProgress: (progress: UploadProgress) => void,
  signal?: AbortSignal,
): Promise<T> {
  const token = await ensureCsrfToken();
  return new Promise<T>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", buildUrl(path));
    xhr.withCredentials = true;
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress({ loaded: event.loaded, total: event.total });
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was interrupted. Try again."));
    xhr.onabort = () => reject(new DOMException("Upload cancelled", "AbortError"));
    xhr.onload = () => {
      const response = new Response(xhr.status === 204 ? null : xhr.responseText, {
        status: xhr.status,
        statusText: xhr.statusText,
      });
      if (response.ok) {
        resolve((xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as T);
      } else {
        void errorFromResponse(response).then(reject);
      }
    };
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

/** DRF page: {count, next, previous, results}. */
export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

/** Lists come back paginated; a few small ones may come back as plain arrays. */
export function resultsOf<T>(data: Page<T> | T[] | undefined): T[] {
  if (!data) return [];
  return Array.isArray(data) ? data : data.results;
}

/**
 * The error to show beside the submit button: everything except reasons already shown
 * next to one of `shownFields`, so no message is lost and none is shown twice.
 */
export function errorBesideButton(error: unknown, shownFields: string[]): unknown {
  if (!error) return null;
  if (!isApiError(error)) return error;
  const shown = Object.keys(error.fields).filter((name) => shownFields.includes(name));
  const unshown = Object.keys(error.fields).filter((name) => !shownFields.includes(name));
  if (shown.length && !unshown.length) return null;
  if (unshown.length) {
    const detail = unshown.map((name) => `${name}: ${(error.fields[name] ?? []).join(" ")}`).join("; ");
    return new ApiError(error.status, error.code, `${error.message} (${detail})`, error.fields);
  }
  return error;
}
