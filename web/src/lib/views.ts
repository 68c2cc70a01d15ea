// What each conversation's screen holds for the person, kept per peer so that nothing of one
// conversation (a draft, a file about to go, an upload, where they had scrolled) shows in another.

/** A file picked, pasted or dropped, shown with its preview until it is sent or removed. */
export interface Staged {
  file: File;
  preview: string | null;  // an object URL, for images
}

/** An upload under way: what the person sees of it. */
export interface UploadProgress {
  name: string;
  size: number;
  fraction: number;
}

/** Where the message list was: following the newest message, or the rows shown and the one at the top. */
export interface ScrollPlace {
  follow: boolean;
  startKey: string | null;
  endKey: string | null;
  anchorKey: string | null;
  offset: number;  // the anchor row's top, in pixels below the top of the list's viewport
}

export interface PeerView {
  draft: string;
  staged: Staged | null;
  upload: UploadProgress | null;
  problem: string | null;  // the last failed upload or send of this conversation, until dismissed
  place: ScrollPlace | null;
  marker: number | null;   // the id of the first message that was unread when the chat was opened
  unreadAtOpen: number;    // how many were: older pages paged in move the marker to the first of them
}

export const emptyView: PeerView = {
  draft: "", staged: null, upload: null, problem: null, place: null, marker: null, unreadAtOpen: 0,
};

export type ViewChange =
  | { type: "draft"; with: string; text: string }
  | { type: "staged"; with: string; staged: Staged | null }
  | { type: "upload"; with: string; upload: UploadProgress | null }
  | { type: "problem"; with: string; problem: string | null }
  | { type: "place"; with: string; place: ScrollPlace | null };

/** Apply one change to the views; the same object when nothing changed (so nothing renders again). */
export function changeView(views: Record<string, PeerView>, change: ViewChange): Record<string, PeerView> {
  const view = views[change.with] ?? emptyView;
  const next: PeerView = (() => {
    switch (change.type) {
      case "draft": return { ...view, draft: change.text };
      case "staged": return { ...view, staged: change.staged };
      case "upload": return { ...view, upload: change.upload };
      case "problem": return { ...view, problem: change.problem };
      case "place": return { ...view, place: change.place };
    }
  })();
  const same = (Object.keys(next) as (keyof PeerView)[]).every((key) => next[key] === view[key]);
  return same ? views : { ...views, [change.with]: next };
}
