import { useSyncExternalStore } from "react";
import { formatRemaining } from "../../../components/format";
import { TimerIcon } from "../../../components/TimerIcon";
import type { Clock } from "../../../lib/clock";

interface CountdownProps {
  expiresAt: string;
  clock: Clock;
  clockOffset: number;  // the server's clock minus ours, as the store estimates it
}

/** Time left before a message disappears; every countdown reads the one shared clock. */
export function Countdown({ expiresAt, clock, clockOffset }: CountdownProps) {
  const now = useSyncExternalStore(clock.subscribe, clock.getNow);
  return (
    <span className="expires">
      <TimerIcon />
      <span className="visually-hidden">disappears in </span>
      <time dateTime={expiresAt}>{formatRemaining(Date.parse(expiresAt) - (now + clockOffset))}</time>
    </span>
  );
}
