import { useState } from "react";
import { formatSize } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import { ImageViewer } from "./ImageViewer";

const MAX_WIDTH = 320;
const MAX_HEIGHT = 240;

/** The thumbnail's size on screen, known before it loads, so the conversation does not jump when it does. */
function shownSize(file: FileInfo): { width: number; height: number } | undefined {
  if (!file.width || !file.height) return undefined;
  const scale = Math.min(1, MAX_WIDTH / file.width, MAX_HEIGHT / file.height);
  return { width: Math.round(file.width * scale), height: Math.round(file.height * scale) };
}

/** An image inline from its thumbnail, opened full size in the page (its link still opens it in a
 *  tab of its own); any other file as a download. */
export function AttachmentView({ file }: { file: FileInfo }) {
  const [viewing, setViewing] = useState(false);
  if (file.thumbnail_url) {
    const size = shownSize(file);
    return (
      <>
        <a className="attachment image" href={file.url} aria-haspopup="dialog"
           onClick={(event) => { event.preventDefault(); setViewing(true); }}>
          <img src={file.thumbnail_url} alt={file.name} loading="lazy" width={size?.width} height={size?.height} />
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
