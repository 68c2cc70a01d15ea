// REST calls, typed by the schemas generated from the server's OpenAPI document
// (api-types.ts, regenerated with `make api-types`; a test checks it is current).
import type { components } from "./api-types";

type Schemas = components["schemas"];
export type User = Schemas["User"];
export type FileInfo = Schemas["File"];
export type Session = Schemas["Session"];
export type ErrorBody = Schemas["Error"]["error"];

export type Timer = Schemas["Timer"];
export type Deleted = Schemas["Deleted"];
export type Message = Schemas["Message"];
export type Conversation = Schemas["Conversation"];
export type MessagePage = Schemas["MessagePage"];
export type ServerFrame = Schemas["ServerFrame"];
export type Person = Schemas["Person"];
export type ClientFrame = Schemas["ClientFrame"];

export type Invite = Schemas["Invite"];
export type Block = Schemas["Block"];
export type RegistrationMode = Schemas["Registration"]["mode"];

/** A refusal from the server, in the one error shape, so forms can show `fields`. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string,
              readonly fields: Record<string, string> = {}) {
    super(message);
  }
}

/** What failed and what to do, in one sentence a person can act on: offline is said as such. */
export function explain(error: unknown, what: string): string {
  if (error instanceof ApiError && error.status === 0) {
    return `${what}: the server could not be reached. Check your connection, then try again.`;
  }
  if (error instanceof ApiError && (error.status === 429 || error.status === 503)) {
    return `${what}: ${error.message} Try again in a moment.`;
  }
  return `${what}: ${error instanceof Error ? error.message : String(error)}`;
}

function toApiError(status: number, body: unknown): ApiError {
  const error = (body as { error?: ErrorBody } | null)?.error;
  if (!error) return new ApiError(status, "network", "The server could not be reached.");
  return new ApiError(status, error.code, error.message, error.fields ?? {});
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = body === undefined ? {} : { "Content-Type": "application/json" };
  let response: Response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin",
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw toApiError(0, null);
  }
  const json: unknown = await response.json().catch(() => null);
  if (!response.ok) throw toApiError(response.status, json);
  return json as T;
}

export const api = {
  registration: () => request<Schemas["Registration"]>("GET", "/api/registration/"),
  register: (username: string, phrase: string, invite?: string) =>
    request<Schemas["LoggedIn"]>("POST", "/api/register/", { username, phrase, ...(invite ? { invite } : {}) }),
  login: (username: string, phrase: string) =>
    request<Schemas["LoggedIn"]>("POST", "/api/login/", { username, phrase }),
  logout: () => request<Schemas["Cleared"]>("POST", "/api/logout/"),
  profile: () => request<Schemas["Profile"]>("GET", "/api/user-profile/"),
  setDisplayName: (displayName: string) =>
    request<Schemas["Profile"]>("PATCH", "/api/user-profile/", { display_name: displayName }),
  person: (username: string) => request<Person>("GET", `/api/users/${encodeURIComponent(username)}/`),
  sessions: () => request<Schemas["SessionList"]>("GET", "/api/sessions/"),
  revokeSession: (id: number) => request<Schemas["Revoked"]>("DELETE", `/api/sessions/${id}`),
  conversations: () => request<{ conversations: Conversation[] }>("GET", "/api/conversations/"),
  history: (peer: string, before?: number) => {
    const query = new URLSearchParams({ with: peer, limit: "50" });
    if (before !== undefined) query.set("before", String(before));
    return request<MessagePage>("GET", `/api/messages/?${query}`);
  },
  timer: (peer: string) => request<Timer>("GET", `/api/conversations/${encodeURIComponent(peer)}/timer/`),
  setTimer: (peer: string, seconds: number) =>
    request<Timer>("PUT", `/api/conversations/${encodeURIComponent(peer)}/timer/`, { seconds }),
  deleteMessage: (id: number) => request<Deleted>("DELETE", `/api/messages/${id}/`),
  invites: () => request<Schemas["InviteList"]>("GET", "/api/invites/"),
  createInvite: () => request<Invite>("POST", "/api/invites/", {}),
  revokeInvite: (code: string) => request<Schemas["InviteRevoked"]>("DELETE", `/api/invites/${encodeURIComponent(code)}/`),
  blocks: () => request<Schemas["BlockList"]>("GET", "/api/blocks/"),
  block: (username: string) => request<Block>("PUT", `/api/blocks/${encodeURIComponent(username)}/`),
  unblock: (username: string) => request<Schemas["Unblocked"]>("DELETE", `/api/blocks/${encodeURIComponent(username)}/`),
  changePhrase: (phrase: string, newPhrase: string) =>
    request<Schemas["Profile"]>("POST", "/api/change-phrase/", { phrase, new_phrase: newPhrase }),
  deleteAccount: (phrase: string) => request<Schemas["AccountDeleted"]>("POST", "/api/delete-account/", { phrase }),
};

export type UploadPurpose = "attachment" | "avatar";

export const CANCELLED = "cancelled";

/** Upload with XHR, because fetch cannot report upload progress; `signal` cancels it. */
export function upload(file: File, purpose: UploadPurpose, onProgress: (fraction: number) => void,
                       signal?: AbortSignal): Promise<FileInfo> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onerror = () => reject(toApiError(0, null));
    xhr.onabort = () => reject(new ApiError(0, CANCELLED, "The upload was cancelled."));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.onload = () => {
      const body: unknown = (() => { try { return JSON.parse(xhr.responseText); } catch { return null; } })();
      if (xhr.status === 201) resolve((body as Schemas["Uploaded"]).file);
      else reject(toApiError(xhr.status, body));
    };
    xhr.open("POST", "/api/upload-file/");
    xhr.send(form);
  });
}
