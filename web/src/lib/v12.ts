// TO BE REMOVED once the server's OpenAPI document describes contract v1.2: `make api-types`
// then generates these shapes into api-types.ts, and lib/api.ts names them from there.
// Until then they are written by hand from docs/api.md, "Who may reach you (v1.2)".

export type RegistrationMode = "open" | "invite" | "closed";

export interface Registration {
  mode: RegistrationMode;
}

export interface Invite {
  code: string;
  url: string;
  uses_left: number;
  expires_at: string;
  created_at: string;
}

export interface InviteList {
  invites: Invite[];
}

export interface InviteRevoked {
  revoked: Invite;
}

export interface Block {
  username: string;
  since: string;
}

export interface BlockList {
  blocks: Block[];
}

export interface Unblocked {
  unblocked: string;
}

export interface AccountDeleted {
  deleted: { messages: number; files: number };
}
