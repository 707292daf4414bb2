// Node colours, shared by the cluster table, the node-coloured image and the timeline.

// nodeColour gives every node a stable, distinct colour (golden-angle hues by first sight).
const colours = new Map();
export function nodeColour(id, alpha) {
  let i = colours.get(id);
  if (i === undefined) { i = colours.size; colours.set(id, i); }
  const h = (i * 137.508 + 210) % 360;
  return alpha == null ? `hsl(${h} 65% 50%)` : `hsl(${h} 65% 50% / ${alpha})`;
}
export function nodeRGB(id) {
  let i = colours.get(id); if (i === undefined) { nodeColour(id); i = colours.get(id); }
  const h = ((i * 137.508 + 210) % 360) / 360, s = 0.65, l = 0.5;
  const f = (n) => { const k = (n + h * 12) % 12, a = s * Math.min(l, 1 - l); return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); };
  return [f(0), f(8), f(4)];
}

