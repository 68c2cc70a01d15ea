// A session's User-Agent as people name their devices: "Firefox on Linux", "Safari on iPhone".
// Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", and Android says "Linux".

const BROWSERS: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\//, "Edge"],
  [/\b(?:OPR|Opera)\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\b(?:Firefox|FxiOS)\//, "Firefox"],
  [/\b(?:Chrome|CriOS|HeadlessChrome|Chromium)\//, "Chrome"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];

const SYSTEMS: [RegExp, string][] = [
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b|\bX11\b/, "Linux"],
];

function first(agent: string, table: [RegExp, string][]): string | null {
  return table.find(([pattern]) => pattern.test(agent))?.[1] ?? null;
}

/** A short name for the device behind a User-Agent; a program that is no browser by its own name. */
export function describeAgent(agent: string): string {
  const browser = first(agent, BROWSERS);
  const system = first(agent, SYSTEMS);
  if (browser && system) return `${browser} on ${system}`;
  if (browser) return browser;
  const program = /^([A-Za-z][\w.-]*)(?:\/([\w.]+))?/.exec(agent.trim());
  if (program && !/^Mozilla$/i.test(program[1])) return program[2] ? `${program[1]} ${program[2]}` : program[1];
  return system ? `A browser on ${system}` : "Unknown device";
}
