import { formatSize } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";

/** An image inline from its thumbnail (linking to the full size); any other file as a download. */
export function AttachmentView({ file }: { file: FileInfo }) {
  if (file.thumbnail_url) {
    return (
      <a className="attachment image" href={file.url} target="_blank" rel="noreferrer">
        <img src={file.thumbnail_url} alt={file.name} loading="lazy" />
      </a>
    );
  }
  return (
    <a className="attachment file" href={file.url} download={file.name}>
      {file.name} <span className="size">({formatSize(file.size)})</span>
    </a>
  );
}
