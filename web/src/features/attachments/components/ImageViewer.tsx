import { useEffect, useRef } from "react";
import { formatSize } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";

interface ImageViewerProps {
  file: FileInfo | null;  // open while there is one
  onClose: () => void;
}

/** An image at full size in the page, over the chat: Escape or Close returns to it. */
export function ImageViewer({ file, onClose }: ImageViewerProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const element = dialog.current;
    if (file && !element?.open) element?.showModal();
    else if (!file && element?.open) element.close();
  }, [file]);

  return (
    <dialog ref={dialog} className="viewer" aria-label={file ? `Image: ${file.name}` : "Image"} onClose={onClose}>
      {file && (
        <>
          <img src={file.url} alt={file.name} width={file.width ?? undefined} height={file.height ?? undefined} />
          <div className="viewer-bar">
            <span>{file.name} <span className="size">({formatSize(file.size)})</span></span>
            <a href={file.url} download={file.name}>Download</a>
            <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>Close</button>
          </div>
        </>
      )}
    </dialog>
  );
}
