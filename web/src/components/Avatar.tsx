interface AvatarProps {
  name: string;
  url?: string | null;
  online?: boolean;
}

/** The picture (or initial) of a person, with their presence as a dot and as text for screen readers. */
export function Avatar({ name, url, online }: AvatarProps) {
  return (
    <span className="avatar" aria-hidden={online === undefined ? true : undefined}>
      {url ? <img src={url} alt="" width={36} height={36} /> : <span className="initial">{name.slice(0, 1).toUpperCase()}</span>}
      {online !== undefined && <span className={online ? "dot online" : "dot"} />}
      {online !== undefined && <span className="visually-hidden">{online ? "online" : "offline"}</span>}
    </span>
  );
}
