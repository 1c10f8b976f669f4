// VidCore ComfyUI extension: an inline video player on Save Video (the file just written), a compact
// readout on the metrics nodes, and the text of the caption nodes. Load Video declares video_upload, so the
// frontend itself adds its upload button and player there.
// The Python side sends {"vidcore_videos": [{filename, subfolder, type, format, fps, frame_count}]},
// {"vidcore_metrics": [{...numbers}]} and {"text": [string]} in the node's "ui" output.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const VIDEO_FORMATS = new Set(["mp4", "webm", "mkv", "mov", "m4v", "avi"]);

function viewUrl({ filename, subfolder = "", type = "output" }) {
  const q = new URLSearchParams({ filename, subfolder, type, t: String(Date.now()) });
  return api.apiURL(`/view?${q.toString()}`);
}

function panel(node, name) {
  // One DOM widget per node and purpose; created on first use. It is not part of the saved widgets.
  let w = node.widgets?.find((x) => x.name === name);
  if (!w) {
    const el = document.createElement("div");
    el.className = "vidcore-panel";
    el.style.cssText = "width:100%;display:flex;flex-direction:column;gap:4px;color:var(--fg-color,#ddd);" +
      "font:12px monospace;overflow:hidden";
    w = node.addDOMWidget(name, "vidcore_preview", el, { serialize: false, hideOnZoom: false });
    w.serialize = false;
    w.computeSize = (width) => [width, w.element.dataset.h ? Number(w.element.dataset.h) : 60];
  }
  return w;
}

function resize(node, w, height) {
  w.element.dataset.h = String(height);
  node.setSize([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas(true, true);
}

function showVideo(node, entry) {
  const w = panel(node, "vidcore_video");
  const el = w.element;
  el.replaceChildren();
  const ext = (entry.format || entry.filename.split(".").pop() || "").toLowerCase();
  const media = VIDEO_FORMATS.has(ext) ? document.createElement("video") : document.createElement("img");
  if (media.tagName === "VIDEO") Object.assign(media, { controls: true, loop: true, muted: true, autoplay: true });
  media.className = "vidcore-video";
  media.style.cssText = "width:100%;max-height:360px;object-fit:contain;background:#000";
  media.src = viewUrl(entry);
  const caption = document.createElement("div");
  const details = [entry.filename];
  if (entry.frame_count) details.push(`${entry.frame_count} frames`);
  if (entry.fps) details.push(`${Number(entry.fps).toFixed(2)} fps`);
  caption.textContent = details.join(" · ");
  el.append(media, caption);
  const update = () => {
    const ratio = (media.videoHeight || media.naturalHeight || 1) / (media.videoWidth || media.naturalWidth || 1);
    resize(node, w, Math.min(360, Math.max(80, (node.size[0] - 20) * ratio)) + 40);
  };
  media.addEventListener(media.tagName === "VIDEO" ? "loadedmetadata" : "load", update);
  resize(node, w, 200);
}

function showLines(node, name, lines) {
  const w = panel(node, name);
  w.element.replaceChildren(
    ...lines.map((line) => {
      const div = document.createElement("div");
      div.textContent = line;
      div.style.whiteSpace = "pre-wrap";
      return div;
    })
  );
  resize(node, w, 18 * Math.max(1, lines.length) + 20);
}

function formatMetrics(m) {
  return Object.entries(m)
    .filter(([, v]) => typeof v === "number" || typeof v === "boolean")
    .map(([k, v]) => `${k}: ${typeof v !== "number" || Number.isInteger(v) ? v : Number(v).toPrecision(4)}`);
}

app.registerExtension({
  name: "VidCore.VideoPreview",
  async setup() {
    document.body.dataset.vidcoreExtension = "loaded"; // a marker for headless checks
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData.name?.startsWith("VidCore")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const videos = message?.vidcore_videos;
      if (videos?.length) showVideo(this, videos[videos.length - 1]);
      const metrics = message?.vidcore_metrics;
      if (metrics?.length) showLines(this, "vidcore_metrics", formatMetrics(metrics[0]));
      const text = message?.text;
      if (text?.length && nodeData.name.startsWith("VidCoreCaption")) showLines(this, "vidcore_text", [String(text[0])]);
    };
  },
});
