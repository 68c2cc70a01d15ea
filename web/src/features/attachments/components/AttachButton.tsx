import { useRef, useState } from "react";
import { ApiError, upload, type FileInfo, type UploadPurpose } from "../../../lib/api";

interface AttachButtonProps {
  label: string;
  purpose: UploadPurpose;
  accept?: string;
  onUploaded: (file: FileInfo) => void;
  disabled?: boolean;
}

/** A button that picks a file and uploads it, showing progress, then hands the File on. */
export function AttachButton({ label, purpose, accept, onUploaded, disabled }: AttachButtonProps) {
  const input = useRef<HTMLInputElement>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function picked(files: FileList | null) {
    const file = files?.[0];
    if (!file) return;
    setError(null);
    setProgress(0);
    try {
      onUploaded(await upload(file, purpose, setProgress));
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : "The upload failed.");
    } finally {
      setProgress(null);
      if (input.current) input.current.value = "";
    }
  }

  return (
    <span className="attach">
      <button type="button" className="secondary" onClick={() => input.current?.click()}
              disabled={disabled || progress !== null}>{label}</button>
      <input ref={input} type="file" hidden accept={accept} onChange={(e) => picked(e.target.files)}
             aria-label={`${label}: choose a file`} tabIndex={-1} />
      {progress !== null && <progress max={1} value={progress} aria-label="Upload progress" />}
      {error && <span role="alert" className="error">{error}</span>}
    </span>
  );
}
