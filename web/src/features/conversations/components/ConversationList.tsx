import { useState, type FormEvent } from "react";
import { Avatar } from "../../../components/Avatar";
import type { ConversationMeta } from "../../../lib/store";

interface ConversationListProps {
  conversations: ConversationMeta[];
  presence: Record<string, boolean>;
  open: string | null;
  me: string;
  onOpen: (username: string) => void;
}

function preview(meta: ConversationMeta, me: string): string {
  if (!meta.last) return "";
  const text = meta.last.message || (meta.last.attachment ? `Attachment: ${meta.last.attachment.name}` : "");
  return meta.last.from === me ? `You: ${text}` : text;
}

/** Conversations newest first, with unread counts, presence and the last message; and a way to start one. */
export function ConversationList({ conversations, presence, open, me, onOpen }: ConversationListProps) {
  const [peer, setPeer] = useState("");

  function start(event: FormEvent) {
    event.preventDefault();
    const name = peer.trim().toLowerCase();
    if (name && name !== me) onOpen(name);
    setPeer("");
  }

  return (
    <nav className="conversations" aria-label="Conversations">
      <form onSubmit={start} className="start">
        <label htmlFor="start-with">Start a conversation with</label>
        <div className="row">
          <input id="start-with" value={peer} onChange={(e) => setPeer(e.target.value)} autoCapitalize="none"
                 placeholder="username" />
          <button type="submit">Open</button>
        </div>
      </form>
      {conversations.length === 0 && <p className="empty">No conversations yet.</p>}
      <ul>
        {conversations.map((meta) => (
          <li key={meta.username}>
            <button className={meta.username === open ? "conversation current" : "conversation"}
                    aria-current={meta.username === open ? "true" : undefined} onClick={() => onOpen(meta.username)}>
              <Avatar name={meta.username} url={meta.peer?.avatar_url} online={presence[meta.username] ?? false} />
              <span className="who">
                <span className="name">{meta.peer?.display_name || meta.username}</span>
                <span className="preview">{preview(meta, me)}</span>
              </span>
              {meta.unread > 0 && <span className="unread">{meta.unread}<span className="visually-hidden"> unread</span></span>}
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}
