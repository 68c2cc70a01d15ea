import { memo, type ReactNode } from "react";
import { formatFull, formatTime } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import type { Clock } from "../../../lib/clock";
import { entryKey, type Entry } from "../../../lib/entries";
import { Countdown } from "./Countdown";
import { MessageText } from "./MessageText";

interface MessageRowProps {
  entry: Entry;
  mine: boolean;
  status: string | null;  // Sending…, Sent, Read or Not sent: shown on one's own last and pending messages
  clock: Clock;
  clockOffset: number;
  onDelete: (entry: Entry) => void;
  renderAttachment: (file: FileInfo) => ReactNode;
}

/** One message. Memoised: a new message renders its own row, not every row of the conversation. */
export const MessageRow = memo(function MessageRow({ entry, mine, status, clock, clockOffset, onDelete,
                                                     renderAttachment }: MessageRowProps) {
  return (
    <li className={mine ? "mine" : "theirs"} data-id={entry.id ?? undefined} data-key={entryKey(entry)}
        aria-busy={entry.id === null ? true : undefined}>
      <span className="visually-hidden">{mine ? "You" : entry.from}: </span>
      {entry.attachment && renderAttachment(entry.attachment)}
      {entry.message && <MessageText text={entry.message} />}
      <span className="meta">
        <time dateTime={entry.sent_at} title={formatFull(entry.sent_at)}>{formatTime(entry.sent_at)}</time>
        {status && <span className={entry.failed ? "status failed" : "status"}> · {status}</span>}
        {entry.expires_at && <> · <Countdown expiresAt={entry.expires_at} clock={clock} clockOffset={clockOffset} /></>}
        {entry.id !== null &&
          <> · <button type="button" className="link delete" aria-haspopup="dialog" onClick={() => onDelete(entry)}>Delete</button></>}
      </span>
    </li>
  );
});
