import { useState } from "react";
import { explain } from "../../../lib/api";

interface AvatarControlProps {
  picker: (onPick: (files: File[]) => void, busy: boolean) => React.ReactNode;
  onAvatar: (file: File, onProgress: (fraction: number) => void) => Promise<void>;
}

/** *Change avatar*: picks an image, uploads it with its progress shown, says what failed. */
export function AvatarControl({ picker, onAvatar }: AvatarControlProps) {
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function picked(files: File[]) {
    setError(null);
    setProgress(0);
    try {
      await onAvatar(files[0], setProgress);
    } catch (failure) {
      setError(explain(failure, "Your avatar was not changed"));
    } finally {
      setProgress(null);
    }
  }

  return (
    <span className="avatar-control">
      {picker(picked, progress !== null)}
      {progress !== null && <progress max={1} value={progress} aria-label="Uploading your avatar" />}
      {error && <span role="alert" className="error">{error}</span>}
    </span>
  );
}
