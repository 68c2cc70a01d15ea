import { formatWhen } from "../../../components/format";
import { blockedPeople, type BlockState } from "../../../lib/blocks";
import { useSelector } from "../../../lib/useStore";
import { BlockControl } from "./BlockControl";

interface BlockedListProps {
  onUnblock: (peer: string) => Promise<void>;
  onRetry: () => void;
}

const never = () => Promise.resolve();
const mine: BlockState = "mine";

/** The people this user blocks, each with *Unblock*: a blocked person whose conversation a logout
 *  erased can still be found and unblocked here. */
export function BlockedList({ onUnblock, onRetry }: BlockedListProps) {
  const blocks = useSelector((state) => state.blocks);
  const people = blockedPeople(blocks);
  return (
    <section aria-labelledby="blocked-title" className="account-section">
      <h3 id="blocked-title">Blocked people</h3>
      {typeof blocks.load === "object" && (
        <div role="alert" className="load-error">
          <span>{blocks.load.error}</span>
          <button type="button" className="secondary" onClick={onRetry}>Retry</button>
        </div>
      )}
      {blocks.load === "loading" && <p className="loading"><span className="spinner" aria-hidden="true" />Loading…</p>}
      {blocks.load === "ready" && people.length === 0 && (
        <p className="hint">Nobody. Block someone from your conversation with them: neither of you can then write to the other.</p>
      )}
      {people.length > 0 && (
        <ul className="rows">
          {people.map((block) => (
            <li key={block.username}>
              <span><strong>{block.username}</strong><br /><small>blocked {formatWhen(block.since)}</small></span>
              <BlockControl peer={block.username} state={mine} onBlock={never} onUnblock={onUnblock}
                            label={`Unblock ${block.username}`} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
