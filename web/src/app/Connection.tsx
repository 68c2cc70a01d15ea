import { useRef } from "react";
import { pendingTotal, type Connection } from "../lib/store";
import { useSelector } from "../lib/useStore";

const STATUS: Record<Connection, string> = { connecting: "Connecting…", online: "Connected", offline: "Offline" };

function waiting(count: number): string {
  return count === 1 ? "1 message waits to be sent" : `${count} messages wait to be sent`;
}

/** The connection in a word: the page's one status region (the banner below says the rest). */
export function ConnectionStatus() {
  const connection = useSelector((state) => state.connection);
  return <span role="status" className={`connection ${connection}`}>{STATUS[connection]}</span>;
}

/** Once the connection is lost (not while it is first made), a banner across the page: what is
 *  happening, what waits to be sent, and a way to try again now. */
export function ConnectionBanner({ onRetry }: { onRetry: () => void }) {
  const connection = useSelector((state) => state.connection);
  const pending = useSelector(pendingTotal);
  const wasOnline = useRef(false);
  if (connection === "online") wasOnline.current = true;
  if (connection === "online" || (!wasOnline.current && pending === 0)) return null;
  return (
    <div className="banner">
      <span className="spinner" aria-hidden="true" />
      <span>
        <strong>Connection lost, reconnecting…</strong>{" "}
        {pending > 0 ? `${waiting(pending)}.` : "New messages show once it is back."}
      </span>
      <button type="button" className="secondary" onClick={onRetry}>Retry now</button>
    </div>
  );
}
