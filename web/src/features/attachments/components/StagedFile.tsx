import { useEffect, useRef } from "react";
import { formatSize } from "../../../components/format";
import { useSelector } from "../../../lib/useStore";

interface StagedFileProps {
  peer: string;
  onRemove: (peer: string) => void;
}

/** Draws an image file into a canvas: no blob: or data: address, which a strict CSP (img-src 'self') refuses. */
function usePreview(file: File | null, canvas: React.RefObject<HTMLCanvasElement | null>) {
  useEffect(() => {
    if (!file || !file.type.startsWith("image/") || typeof createImageBitmap === "undefined") return;
    let cancelled = false;
    createImageBitmap(file).then((bitmap) => {
      const element = canvas.current;
      if (cancelled || !element) return bitmap.close();
      const scale = Math.min(1, 160 / Math.max(bitmap.width, bitmap.height));
      element.width = Math.max(1, Math.round(bitmap.width * scale));
      element.height = Math.max(1, Math.round(bitmap.height * scale));
      element.getContext("2d")?.drawImage(bitmap, 0, 0, element.width, element.height);
      bitmap.close();
    }, () => undefined);  // not an image the browser can decode: the name and size say enough
    return () => { cancelled = true; };
  }, [file, canvas]);
}

/** The file about to be sent to this conversation, with a preview; the message box holds its caption. */
export function StagedFile({ peer, onRemove }: StagedFileProps) {
  const staged = useSelector((state) => state.views[peer]?.staged ?? null);
  const canvas = useRef<HTMLCanvasElement>(null);
  usePreview(staged?.file ?? null, canvas);
  if (!staged) return null;
  const { file } = staged;
  const image = file.type.startsWith("image/");
  return (
    <div className="staged" role="group" aria-label={`File to send: ${file.name}`}>
      {image ? <canvas ref={canvas} className="preview" role="img" aria-label={`Preview of ${file.name}`} />
             : <span className="file-icon" aria-hidden="true">📄</span>}
      <span className="staged-name">
        <strong>{file.name}</strong>
        <small>{formatSize(file.size)} · press Send to send it{image ? "" : " as a download"}; type a caption if you like</small>
      </span>
      <button type="button" className="secondary" onClick={() => onRemove(peer)} aria-label={`Remove ${file.name}`}>Remove</button>
    </div>
  );
}
