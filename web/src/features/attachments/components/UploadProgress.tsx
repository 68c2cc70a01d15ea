import { useSelector } from "../../../lib/useStore";

interface UploadProgressProps {
  peer: string;
  onCancel: (peer: string) => void;
  onDismiss: (peer: string) => void;
}

/** This conversation's upload under way (name, percent, Cancel), or why the last one failed. */
export function UploadProgress({ peer, onCancel, onDismiss }: UploadProgressProps) {
  const upload = useSelector((state) => state.views[peer]?.upload ?? null);
  const problem = useSelector((state) => state.views[peer]?.problem ?? null);
  if (problem) {
    return (
      <div className="upload-problem" role="alert">
        <span>{problem}</span>
        <button type="button" className="link" onClick={() => onDismiss(peer)}>Dismiss</button>
      </div>
    );
  }
  if (!upload) return null;
  const percent = Math.floor(upload.fraction * 100);
  return (
    <div className="upload">
      <span className="upload-name">Sending {upload.name}</span>
      <progress max={100} value={percent} aria-label={`Sending ${upload.name}`} />
      <span className="percent" aria-hidden="true">{percent} %</span>
      <button type="button" className="secondary" onClick={() => onCancel(peer)}>Cancel</button>
    </div>
  );
}
