import { useRef } from "react";

interface FilePickerProps {
  label: string;
  accept?: string;
  disabled?: boolean;
  onPick: (files: File[]) => void;
}

/** A button that opens the system's file chooser and hands on what was picked. */
export function FilePicker({ label, accept, disabled, onPick }: FilePickerProps) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <span className="attach">
      <button type="button" className="secondary" onClick={() => input.current?.click()} disabled={disabled}>{label}</button>
      <input ref={input} type="file" hidden accept={accept} aria-label={`${label}: choose a file`} tabIndex={-1}
             onChange={(event) => {
               const files = Array.from(event.target.files ?? []);
               event.target.value = "";  // the same file picked again is a new pick
               if (files.length) onPick(files);
             }} />
    </span>
  );
}
