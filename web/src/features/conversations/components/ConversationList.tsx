import { memo, useState, type FormEvent } from "react";
import { Avatar } from "../../../components/Avatar";
import type { State } from "../../../lib/store";
import { shallowEqual, useSelector } from "../../../lib/useStore";
import { FirstRun } from "./FirstRun";

interface ConversationListProps {
  me: string;
  open: string | null;
  onOpen: (username: string) => void;
  onStart: (name: string) => Promise<string | null>;  // the problem with that name, or null once opened
  onRetry: () => void;
  notice: string | null;        // a problem from elsewhere (an address naming nobody), until dismissed
  onDismissNotice: () => void;
}

function newestFirst(state: State): string[] {
  return Object.values(state.conversations)
    .sort((a, b) => (b.last?.id ?? Infinity) - (a.last?.id ?? Infinity))
    .map((meta) => meta.username);
}

function preview(state: State, username: string, me: string): string {
  const last = state.conversations[username]?.last;
  if (!last) return "";
  const text = last.message || (last.attachment ? `Attachment: ${last.attachment.name}` : "");
  return last.from === me ? `You: ${text}` : text;
}

interface RowProps { username: string; me: string; current: boolean; onOpen: (username: string) => void }

/** One conversation; renders again only when its own preview, count, name, avatar or presence change. */
const ConversationRow = memo(function ConversationRow({ username, me, current, onOpen }: RowProps) {
  const text = useSelector((state) => preview(state, username, me));
  const unread = useSelector((state) => state.conversations[username]?.unread ?? 0);
  const person = useSelector((state) => state.people[username]);
  const online = useSelector((state) => state.presence[username] ?? false);
  return (
    <li>
      <button className={current ? "conversation current" : "conversation"} aria-current={current ? "true" : undefined}
              onClick={() => onOpen(username)}>
        <Avatar name={person?.display_name || username} url={person?.avatar_url} online={online} />
        <span className="who">
          <span className="name">
            {person?.display_name || username}
            {/* a display name may be anything, "bob" included: the username says who it really is */}
            {person?.display_name && person.display_name !== username && <span className="handle"> {username}</span>}
          </span>
          <span className="preview">{text}</span>
        </span>
        {unread > 0 && <span className="unread">{unread}<span className="visually-hidden"> unread</span></span>}
      </button>
    </li>
  );
});

/** Conversations newest first, with unread counts, presence and the last message; and a way to
 *  start one, with a username checked before anything is listed. */
export function ConversationList(props: ConversationListProps) {
  const { me, open, onOpen, onStart } = props;
  const usernames = useSelector(newestFirst, shallowEqual);
  const list = useSelector((state) => state.list);
  const [name, setName] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function start(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    const found = await onStart(name);
    setBusy(false);
    setProblem(found);
    if (!found) setName("");
  }

  const shown = problem ?? props.notice;
  return (
    <nav className="conversations" aria-label="Conversations">
      <form onSubmit={start} className="start" noValidate>
        <label htmlFor="start-with">Start a conversation with</label>
        <div className="row">
          <input id="start-with" value={name} autoCapitalize="none" autoComplete="off" spellCheck={false}
                 placeholder="username" aria-describedby={shown ? "start-problem" : undefined}
                 aria-invalid={problem ? true : undefined}
                 onChange={(e) => { setName(e.target.value); setProblem(null); }} />
          <button type="submit" disabled={busy}>Open</button>
        </div>
        {shown && (
          <p id="start-problem" role="alert" className="error">
            {shown}{" "}
            {!problem && <button type="button" className="link" onClick={props.onDismissNotice}>Dismiss</button>}
          </p>
        )}
      </form>
      {list === "loading" && usernames.length === 0 && <p className="loading"><span className="spinner" aria-hidden="true" />Loading conversations…</p>}
      {typeof list === "object" && (
        <div role="alert" className="load-error">
          <span>{list.error}</span>
          <button type="button" className="secondary" onClick={props.onRetry}>Retry</button>
        </div>
      )}
      {list === "ready" && usernames.length === 0 && <FirstRun me={me} />}
      <ul>
        {usernames.map((username) => (
          <ConversationRow key={username} username={username} me={me} current={username === open} onOpen={onOpen} />
        ))}
      </ul>
    </nav>
  );
}
