import { useState } from "react";
import { formatSize } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import { ImageViewer } from "./ImageViewer";

/** An image inline from its thumbnail, opened full size in the page (its link still opens it in a
 *  tab of its own); any other file as a download. */
export function AttachmentView({ file }: { file: FileInfo }) {
  const [viewing, setViewing] = useState(false);
  if (file.thumbnail_url) {
    const ratio = file.width && file.height ? `${file.width} / ${file.height}` : undefined;
    return (
      <>
        <a className="attachment image" href={file.url} aria-haspopup="dialog"
           onClick={(event) => { event.preventDefault(); setViewing(true); }}>
          <img src={file.thumbnail_url} alt={file.name} loading="lazy" style={ratio ? { aspectRatio: ratio } : undefined} />
        </a>
        <ImageViewer file={viewing ? file : null} onClose={() => setViewing(false)} />
      </>
    );
  }
  return (
    <a className="attachment file" href={file.url} download={file.name}>
      {file.name} <span className="size">({formatSize(file.size)})</span>
    </a>
  );
}
