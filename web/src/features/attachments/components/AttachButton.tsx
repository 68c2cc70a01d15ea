import { useSelector } from "../../../lib/useStore";
import { FilePicker } from "./FilePicker";

/** *Attach* for one conversation: busy only while that conversation's own upload runs. */
export function AttachButton({ peer, onFiles, refused = false }:
                             { peer: string; onFiles: (peer: string, files: File[]) => void; refused?: boolean }) {
  const uploading = useSelector((state) => Boolean(state.views[peer]?.upload));
  return <FilePicker label="Attach" disabled={uploading || refused} onPick={(files) => onFiles(peer, files)} />;
}
