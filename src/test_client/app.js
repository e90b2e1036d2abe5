// ws-stream-server test client: publish with MediaRecorder, play with Media
// Source Extensions, probe the first chunk. Plain script, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

const ID_RULE = /^[A-Za-z0-9_-]{1,128}$/;
const HEARTBEAT_MS = 20000;
const LOG_LINES = 60;

const CLOSE_MEANINGS = {
  1000: "end of stream",
  1001: "server shutting down",
  1006: "connection lost",
  1008: "policy: too slow, idle, or invalid key",
  1009: "message too big",
};

const RECORDER_TYPES = [
  ["video/webm;codecs=vp8,opus", "WebM · VP8 + Opus"],
  ["video/webm;codecs=vp9,opus", "WebM · VP9 + Opus"],
  ["video/webm;codecs=h264,opus", "WebM · H.264 + Opus"],
  ["video/webm;codecs=av1,opus", "WebM · AV1 + Opus"],
  ["video/mp4;codecs=avc1.42E01E,mp4a.40.2", "MP4 · H.264 + AAC"],
  ["video/mp4", "MP4 (browser's choice)"],
  ["video/webm", "WebM (browser's choice)"],
];

// === formatting ===

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function formatBitrate(bitsPerSecond) {
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bitsPerSecond / 1e3)} kbit/s`;
}

function closeText(ev) {
  const meaning = CLOSE_MEANINGS[ev.code] || "closed";
  const reason = ev.reason && ev.reason !== meaning ? ` “${ev.reason}”` : "";
  return `closed ${ev.code} (${meaning})${reason}`;
}

function hex(bytes, count) {
  return Array.from(bytes.subarray(0, count), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

// === small UI helpers ===

function setState(el, state, text) {
  el.dataset.state = state;
  el.textContent = text || state;
}

function log(listId, text, level) {
  const list = $(listId);
  const item = document.createElement("li");
  item.className = level || "info";
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, document.createTextNode(text));
  list.prepend(item);
  while (list.children.length > LOG_LINES) list.lastChild.remove();
}

/** Rolling bitrate over the last few seconds of byte counts. */
class RateMeter {
  constructor() {
    this.samples = [];
  }
  sample(totalBytes) {
    const now = performance.now();
    this.samples.push([now, totalBytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 4000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return now - t0 > 500 ? ((totalBytes - b0) * 8 * 1000) / (now - t0) : null;
  }
}

// === stream address ===

function checkId(input, errorEl, label) {
  const value = input.value.trim();
  let message = "";
  if (value === "") message = `${label} is required.`;
  else if (value.length > 128) message = `${label} is longer than 128 characters.`;
  else if (!ID_RULE.test(value)) message = `${label} may contain only A–Z, a–z, 0–9, _ and -.`;
  errorEl.textContent = message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  return message ? null : value;
}

/** Channel and key if both are valid; shows the problems otherwise. */
function streamIds() {
  const channel = checkId($("channel"), $("channel-error"), "Channel");
  const key = checkId($("key"), $("key-error"), "Key");
  return channel && key ? { channel, key } : null;
}

function wsUrl(ids, kind) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/${ids.channel}/${ids.key}/${kind}`;
}

function randomKey() {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

function updateShareLink() {
  const link = $("share-link");
  const params = new URLSearchParams({ channel: $("channel").value.trim(), key: $("key").value.trim() });
  link.href = `${location.pathname}?${params}`;
}

// === socket with heartbeat and readable closes ===

/**
 * Opens `kind` on the stream. Sends `h` every 20 s, passes server texts and
 * binary chunks on, and explains a refusal before the upgrade (the browser
 * only sees close code 1006 then).
 */
function openSocket(ids, kind, logId, handlers) {
  const ws = new WebSocket(wsUrl(ids, kind));
  ws.binaryType = "arraybuffer";
  let opened = false;
  let beat = null;
  log(logId, `connecting to ${wsUrl({ channel: ids.channel, key: "***" }, kind)}`);
  ws.onopen = () => {
    opened = true;
    beat = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send("h");
    }, HEARTBEAT_MS);
    log(logId, "connected");
    handlers.open?.();
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      if (ev.data === "h") handlers.heartbeat?.();
      else {
        log(logId, `server says: ${ev.data}`, "error");
        handlers.text?.(ev.data);
      }
      return;
    }
    handlers.chunk?.(new Uint8Array(ev.data));
  };
  ws.onclose = (ev) => {
    clearInterval(beat);
    let text = closeText(ev);
    let level = ev.code === 1000 ? "info" : "error";
    if (!opened && ev.code === 1006) {
      text =
        "the server refused the connection before it opened (for example 403 Already publishing., " +
        "404 Invalid channel., 429 Too many requests.) or is unreachable; the browser cannot show " +
        "the server's answer, its log can";
      level = "error";
    }
    log(logId, text, level);
    handlers.close?.(ev, opened, text);
  };
  return ws;
}

// === publish ===

const publisher = {
  ws: null,
  recorder: null,
  stream: null,
  timer: null,
  sent: 0,
  chunks: 0,
  meter: null,
  stopping: false,
};

function fillRecorderTypes() {
  const select = $("mime");
  const canRecord = typeof MediaRecorder !== "undefined";
  const supported = canRecord ? RECORDER_TYPES.filter(([t]) => MediaRecorder.isTypeSupported(t)) : [];
  for (const [type, label] of supported) select.append(new Option(label, type));
  select.append(new Option("Browser default", ""));
  if (!canRecord) {
    $("publish-start").disabled = true;
    log("publish-log", "this browser has no MediaRecorder: publishing is not possible", "error");
  }
}

async function captureSource(source) {
  const media = navigator.mediaDevices;
  if (!media) throw new Error("media devices need a secure context (https or localhost)");
  if (source === "screen") return media.getDisplayMedia({ video: true, audio: true });
  try {
    return await media.getUserMedia({ video: true, audio: true });
  } catch (err) {
    log("publish-log", `camera + microphone failed (${err.message}); trying the camera alone`, "warn");
    return media.getUserMedia({ video: true });
  }
}

/** The chosen type, without the audio codec when there is no audio track. */
function recorderType(stream) {
  const chosen = $("mime").value;
  if (!chosen || stream.getAudioTracks().length > 0) return chosen;
  const videoOnly = chosen.replace(/,(opus|mp4a[.\d]*)/, "");
  return MediaRecorder.isTypeSupported(videoOnly) ? videoOnly : chosen;
}

async function startPublishing() {
  const ids = streamIds();
  if (!ids) {
    setState($("publish-state"), "invalid", "check channel and key");
    return;
  }
  const p = publisher;
  p.sent = 0;
  p.chunks = 0;
  p.stopping = false;
  p.meter = new RateMeter();
  showPublishStats();
  $("publish-start").disabled = true;
  $("publish-stop").disabled = false;
  setState($("publish-state"), "starting", "asking for media");
  try {
    p.stream = await captureSource($("source").value);
  } catch (err) {
    log("publish-log", `no media: ${err.message}`, "error");
    finishPublishing("error", "no media");
    return;
  }
  $("preview").srcObject = p.stream;
  $("preview").parentElement.classList.add("live");
  $("preview").play().catch(() => {});
  for (const track of p.stream.getTracks()) {
    track.onended = () => {
      log("publish-log", `${track.kind} track ended`, "warn");
      stopPublishing();
    };
  }
  setState($("publish-state"), "connecting", "connecting");
  p.ws = openSocket(ids, "publish", "publish-log", {
    open: () => startRecorder(),
    close: (ev, opened) => {
      const clean = p.stopping && (ev.code === 1000 || ev.code === 1005);
      finishPublishing(clean ? "stopped" : "error", clean ? "stopped" : opened ? closeText(ev) : "refused");
    },
  });
}

function startRecorder() {
  const p = publisher;
  const type = recorderType(p.stream);
  const options = { videoBitsPerSecond: Number($("bitrate").value) * 1000 || 2500000 };
  if (type) options.mimeType = type;
  try {
    p.recorder = new MediaRecorder(p.stream, options);
  } catch (err) {
    log("publish-log", `MediaRecorder refused ${type || "the default type"}: ${err.message}`, "error");
    p.ws.close(1000, "recorder failed");
    return;
  }
  p.recorder.ondataavailable = (ev) => {
    if (ev.data.size === 0 || !p.ws || p.ws.readyState !== WebSocket.OPEN) return;
    p.ws.send(ev.data);
    p.sent += ev.data.size;
    p.chunks += 1;
  };
  p.recorder.onerror = (ev) => log("publish-log", `recorder error: ${ev.error?.message || ev}`, "error");
  p.recorder.onstop = () => {
    if (p.ws && p.ws.readyState === WebSocket.OPEN) p.ws.close(1000, "publisher stopped");
  };
  const timeslice = Math.max(20, Number($("timeslice").value) || 500);
  p.recorder.start(timeslice);
  $("publish-mime").textContent = p.recorder.mimeType || type || "default";
  log("publish-log", `recording ${p.recorder.mimeType || type} every ${timeslice} ms`);
  setState($("publish-state"), "publishing", "publishing");
  p.timer = setInterval(showPublishStats, 1000);
}

function showPublishStats() {
  const p = publisher;
  const onWire = p.sent - (p.ws ? p.ws.bufferedAmount : 0);
  $("bytes-sent").textContent = formatBytes(Math.max(0, onWire));
  $("bytes-sent").dataset.bytes = String(Math.max(0, onWire));
  $("chunks-sent").textContent = String(p.chunks);
  const rate = p.meter ? p.meter.sample(Math.max(0, onWire)) : null;
  $("bitrate-sent").textContent = rate === null ? "–" : formatBitrate(rate);
}

function stopPublishing() {
  const p = publisher;
  if (p.stopping) return;
  p.stopping = true;
  setState($("publish-state"), "stopping", "stopping");
  if (p.recorder && p.recorder.state !== "inactive") p.recorder.stop();
  else if (p.ws && p.ws.readyState <= WebSocket.OPEN) p.ws.close(1000, "publisher stopped");
  else finishPublishing("stopped", "stopped");
}

function finishPublishing(state, text) {
  const p = publisher;
  clearInterval(p.timer);
  if (p.recorder && p.recorder.state !== "inactive") p.recorder.stop();
  if (p.stream) for (const track of p.stream.getTracks()) track.stop();
  showPublishStats();
  p.recorder = null;
  p.stream = null;
  p.ws = null;
  $("preview").srcObject = null;
  $("preview").parentElement.classList.remove("live");
  setState($("publish-state"), state, text);
  $("publish-start").disabled = false;
  $("publish-stop").disabled = true;
}

// === container sniffing (first chunk) ===

function findAscii(bytes, text, from = 0) {
  const first = text.charCodeAt(0);
  outer: for (let i = bytes.indexOf(first, from); i !== -1; i = bytes.indexOf(first, i + 1)) {
    if (i + text.length > bytes.length) return -1;
    for (let j = 1; j < text.length; j++) if (bytes[i + j] !== text.charCodeAt(j)) continue outer;
    return i;
  }
  return -1;
}

function profileLevel(bytes, at) {
  return Array.from(bytes.subarray(at, at + 3), (b) => b.toString(16).padStart(2, "0"))
    .join("")
    .toUpperCase();
}

/** avc1.PPCCLL from a WebM CodecPrivate (ID 63A2) after the AVC CodecID. */
function webmAvcCodec(bytes, from) {
  for (let i = from; i + 8 < bytes.length && i < from + 256; i++) {
    if (bytes[i] !== 0x63 || bytes[i + 1] !== 0xa2) continue;
    const sizeByte = bytes[i + 2];
    let width = 1;
    while (width <= 8 && !(sizeByte & (0x80 >> (width - 1)))) width++;
    const record = i + 2 + width;
    if (record + 4 <= bytes.length && bytes[record] === 1) return `avc1.${profileLevel(bytes, record + 1)}`;
  }
  return "avc1.42E01E";
}

/**
 * What a stream's first bytes say: container, MSE type and codecs found.
 * Returns null when the bytes are not (yet) recognisable.
 */
function sniff(bytes) {
  const codecs = [];
  if (bytes.length >= 4 && bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) {
    if (findAscii(bytes, "V_VP8") !== -1) codecs.push("vp8");
    if (findAscii(bytes, "V_VP9") !== -1) codecs.push("vp9");
    if (findAscii(bytes, "V_AV1") !== -1) codecs.push("av01.0.08M.08");
    const avc = findAscii(bytes, "V_MPEG4/ISO/AVC");
    if (avc !== -1) codecs.push(webmAvcCodec(bytes, avc));
    if (findAscii(bytes, "A_OPUS") !== -1) codecs.push("opus");
    if (findAscii(bytes, "A_VORBIS") !== -1) codecs.push("vorbis");
    const matroska = findAscii(bytes.subarray(0, 64), "matroska") !== -1;
    const base = matroska ? "video/x-matroska" : "video/webm";
    return { container: matroska ? "Matroska" : "WebM", base, codecs };
  }
  if (bytes.length >= 8 && findAscii(bytes.subarray(4, 8), "ftyp") === 0) {
    const avcC = findAscii(bytes, "avcC");
    if (avcC !== -1 && avcC + 8 <= bytes.length) codecs.push(`avc1.${profileLevel(bytes, avcC + 5)}`);
    else if (findAscii(bytes, "avc1") !== -1) codecs.push("avc1.42E01E");
    if (findAscii(bytes, "hvc1") !== -1) codecs.push("hvc1.1.6.L93.B0");
    if (findAscii(bytes, "vp09") !== -1) codecs.push("vp09.00.10.08");
    if (findAscii(bytes, "av01") !== -1) codecs.push("av01.0.08M.08");
    if (findAscii(bytes, "mp4a") !== -1) codecs.push("mp4a.40.2");
    if (findAscii(bytes, "Opus") !== -1) codecs.push("opus");
    return { container: "MP4", base: "video/mp4", codecs };
  }
  return null;
}

function mseType(info) {
  return info.codecs.length ? `${info.base}; codecs="${info.codecs.join(",")}"` : info.base;
}

// === WebM re-clustering for MSE ===
//
// Firefox's MSE drops the video of a Cluster that does not start with a video
// keyframe when the stream also carries audio, and MediaRecorder (Firefox's,
// Chromium's) starts Clusters every second or so but keyframes far less
// often. So the player re-frames the WebM before appending: one unknown-size
// Cluster per video keyframe, every block moved into it with its timestamp
// re-based, as soon as the block is complete (no Cluster of delay added).

const EBML_ID = 0x1a45dfa3;
const SEGMENT_ID = 0x18538067;
const CLUSTER_ID = 0x1f43b675;
const TRACKS_ID = 0x1654ae6b;
const TRACK_ENTRY_ID = 0xae;
const TRACK_NUMBER_ID = 0xd7;
const TRACK_TYPE_ID = 0x83;
const CODEC_ID_ID = 0x86;
const TIMECODE_ID = 0xe7;
const SIMPLE_BLOCK_ID = 0xa3;
const BLOCK_GROUP_ID = 0xa0;
const BLOCK_ID = 0xa1;
const REFERENCE_BLOCK_ID = 0xfb;
/** Cluster children that may follow a Timecode (anything else ends an unknown-size Cluster). */
const CLUSTER_CHILDREN = new Set([TIMECODE_ID, SIMPLE_BLOCK_ID, BLOCK_GROUP_ID, 0x5854, 0xa7, 0xab, 0xaf, 0xec, 0xbf]);
/** A new Cluster's Timecode sits this far (ms at the usual scale) before its keyframe, so
 * audio that arrives after the keyframe with a slightly earlier time still gets a
 * non-negative offset (Chromium rejects negative ones). */
const CLUSTER_LEAD = 1000;
const MAX_OFFSET = 32767;

/** A variable-size integer at `at`: { value, length, unknown } or null when incomplete. */
function readVint(bytes, at) {
  if (at >= bytes.length) return null;
  const first = bytes[at];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8) throw new Error(`invalid EBML size byte 0x${first.toString(16)}`);
  if (at + length > bytes.length) return null;
  let value = first & (0xff >> length);
  let unknown = value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + bytes[at + i];
    if (bytes[at + i] !== 0xff) unknown = false;
  }
  return { value, length, unknown };
}

/** An element header at `at`: { id, size (null: unknown), length } or null when incomplete. */
function readElementHeader(bytes, at) {
  if (at >= bytes.length) return null;
  const first = bytes[at];
  const idLength = first >= 0x80 ? 1 : first >= 0x40 ? 2 : first >= 0x20 ? 3 : first >= 0x10 ? 4 : 0;
  if (!idLength) throw new Error(`invalid EBML ID byte 0x${first.toString(16)}`);
  if (at + idLength > bytes.length) return null;
  let id = 0;
  for (let i = 0; i < idLength; i++) id = id * 256 + bytes[at + i];
  const size = readVint(bytes, at + idLength);
  if (!size) return null;
  return { id, size: size.unknown ? null : size.value, length: idLength + size.length };
}

function readUint(bytes, at, length) {
  let value = 0;
  for (let i = 0; i < length; i++) value = value * 256 + bytes[at + i];
  return value;
}

/** The children of the element body bytes[from, to): [{ id, at (body start), size }]. */
function children(bytes, from, to) {
  const out = [];
  for (let at = from; at < to; ) {
    const h = readElementHeader(bytes, at);
    if (!h || h.size === null || at + h.length + h.size > to) break;
    out.push({ id: h.id, at: at + h.length, size: h.size });
    at += h.length + h.size;
  }
  return out;
}

class WebmReclusterer {
  constructor() {
    this.pending = new Uint8Array(0);
    this.offset = 0; // stream offset of pending[0]
    this.level = "top"; // top | segment | cluster
    this.segmentEnd = Infinity;
    this.clusterEnd = Infinity;
    this.videoTracks = new Set();
    this.clusterTime = 0;
    this.outTime = null; // Timecode of the Cluster being written; null: none open
    this.inMedia = false; // a Cluster was seen in this Segment
    this.out = [];
    this.clusters = 0; // Clusters written, for the page's stats
  }

  /** Takes received bytes; returns the re-framed bytes ready so far (maybe empty). */
  push(chunk) {
    const bytes = this.pending.length ? concat([this.pending, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const pos = this.offset + at;
      if (this.level === "cluster" && pos >= this.clusterEnd) this.level = "segment";
      if (this.level === "segment" && pos >= this.segmentEnd) this.level = "top";
      const h = readElementHeader(bytes, at);
      if (!h) break;
      const body = at + h.length;
      if (h.id === SEGMENT_ID && this.level === "top") {
        // Re-framing changes the length: always an unknown-size Segment.
        this.out.push(Uint8Array.of(0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
        this.level = "segment";
        this.segmentEnd = h.size === null ? Infinity : pos + h.length + h.size;
        this.inMedia = false;
        this.outTime = null;
        at = body;
        continue;
      }
      if (h.id === CLUSTER_ID && this.level !== "top") {
        this.level = "cluster";
        this.clusterEnd = h.size === null ? Infinity : pos + h.length + h.size;
        this.inMedia = true;
        at = body;
        continue;
      }
      if (this.level === "cluster" && !CLUSTER_CHILDREN.has(h.id)) this.level = "segment";
      if (this.level === "segment" && h.id === EBML_ID) this.level = "top";
      if (h.size === null) throw new Error(`unknown-size element 0x${h.id.toString(16)}`);
      const end = body + h.size;
      if (end > bytes.length) break;
      this.element(h.id, bytes.subarray(at, end), h.length);
      at = end;
    }
    this.offset += at;
    this.pending = bytes.slice(at);
    const out = this.out.length === 1 ? this.out[0] : concat(this.out);
    this.out = [];
    return out;
  }

  element(id, element, headerLength) {
    if (this.level === "top") {
      if (id === EBML_ID) {
        this.videoTracks.clear();
        this.outTime = null;
      }
      this.out.push(element);
    } else if (this.level === "segment") {
      // Before the media: Info, Tracks, SeekHead... pass; after it, Cues and
      // the like only describe the original layout.
      if (this.inMedia) return;
      if (id === TRACKS_ID) this.readTracks(element, headerLength);
      this.out.push(element);
    } else if (id === TIMECODE_ID) {
      this.clusterTime = readUint(element, headerLength, element.length - headerLength);
    } else if (id === SIMPLE_BLOCK_ID) {
      this.block(element, headerLength, null);
    } else if (id === BLOCK_GROUP_ID) {
      const parts = children(element, headerLength, element.length);
      const block = parts.find((p) => p.id === BLOCK_ID);
      if (block) this.block(element, block.at, !parts.some((p) => p.id === REFERENCE_BLOCK_ID));
    }
    // Other Cluster children (Position, PrevSize, Void, CRC-32) would be wrong after re-framing.
  }

  readTracks(element, headerLength) {
    for (const entry of children(element, headerLength, element.length)) {
      if (entry.id !== TRACK_ENTRY_ID) continue;
      let number = null;
      let video = false;
      for (const field of children(element, entry.at, entry.at + entry.size)) {
        if (field.id === TRACK_NUMBER_ID) number = readUint(element, field.at, field.size);
        if (field.id === TRACK_TYPE_ID) video = readUint(element, field.at, field.size) === 1;
        if (field.id === CODEC_ID_ID && element[field.at] === 0x56 /* "V_" */) video = true;
      }
      if (number !== null && video) this.videoTracks.add(number);
    }
  }

  /** A block whose track number starts at element[at]; `key` null: read SimpleBlock flags. */
  block(element, at, key) {
    const track = readVint(element, at);
    if (!track) return;
    const offsetAt = at + track.length;
    const relative = (element[offsetAt] << 24) >> 16 | element[offsetAt + 1];
    const time = this.clusterTime + relative;
    const isKey = key === null ? (element[offsetAt + 2] & 0x80) !== 0 : key;
    const videoKey = isKey && this.videoTracks.has(track.value);
    const behind = time < this.outTime && this.outTime > 0;
    if (this.outTime === null || videoKey || behind || time - this.outTime > MAX_OFFSET) {
      // Cluster Timecodes are unsigned: a stream with negative block times keeps negative offsets.
      this.openCluster(Math.max(0, videoKey || this.outTime === null ? time - CLUSTER_LEAD : time));
    }
    const copy = element.slice();
    const rebased = time - this.outTime;
    copy[offsetAt] = (rebased >> 8) & 0xff;
    copy[offsetAt + 1] = rebased & 0xff;
    this.out.push(copy);
  }

  openCluster(time) {
    this.outTime = time;
    const timecode = [];
    for (let t = time; timecode.length === 0 || t > 0; t = Math.floor(t / 256)) timecode.unshift(t % 256);
    this.out.push(
      Uint8Array.of(0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xe7, 0x80 | timecode.length, ...timecode),
    );
    this.clusters += 1;
  }
}

// === play ===

const player = {
  ws: null,
  source: null,
  buffer: null,
  queue: [],
  head: [],
  reclusterer: null,
  received: 0,
  meter: null,
  timer: null,
  ended: false,
  finished: false,
  closedText: "",
  /** Playing `/play` over HTTP: the element fetches, no MediaSource. */
  http: false,
};

function startPlaying() {
  const ids = streamIds();
  if (!ids) {
    setState($("play-state"), "invalid", "check channel and key");
    return;
  }
  if ($("play-transport").value === "http") {
    startHttpPlay(ids);
    return;
  }
  if (typeof MediaSource === "undefined") {
    log("play-log", "this browser has no Media Source Extensions: live playback is not possible", "error");
    setState($("play-state"), "error", "no MSE");
    return;
  }
  resetPlayer();
  $("play-start").disabled = true;
  $("play-stop").disabled = false;
  setState($("play-state"), "connecting", "connecting");
  const pl = player;
  pl.meter = new RateMeter();
  pl.timer = setInterval(tickPlayer, 500);
  pl.ws = openSocket(ids, "receive", "play-log", {
    open: () => setState($("play-state"), "waiting", "waiting for the stream"),
    chunk: (bytes) => onPlayChunk(bytes),
    close: (ev, opened) => {
      pl.ws = null;
      pl.ended = true;
      pl.closedText = opened ? closeText(ev) : "refused";
      finishWhenDrained();
    },
  });
}

/** `GET /{channel}/{key}/play` straight into the video element: no script between. */
function startHttpPlay(ids) {
  resetPlayer();
  $("play-start").disabled = true;
  $("play-stop").disabled = false;
  const pl = player;
  pl.http = true;
  pl.timer = setInterval(tickPlayer, 500);
  const path = `/${ids.channel}/${ids.key}/play`;
  log("play-log", `playing ${location.origin}/${ids.channel}/***/play over HTTP`);
  setState($("play-state"), "connecting", "waiting for the stream");
  const video = $("video");
  video.parentElement.classList.add("live");
  video.src = path;
  video.play().catch((err) => log("play-log", `play(): ${err.message}`, "warn"));
  $("play-mime").textContent = "(the server's Content-Type)";
}

function resetPlayer() {
  const pl = player;
  clearInterval(pl.timer);
  pl.queue = [];
  pl.head = [];
  pl.reclusterer = null;
  pl.received = 0;
  pl.http = false;
  pl.ended = false;
  pl.finished = false;
  pl.buffer = null;
  pl.source = null;
  const video = $("video");
  video.parentElement.classList.remove("live");
  video.removeAttribute("src");
  video.load();
  $("bytes-received").textContent = "0 B";
  $("bytes-received").dataset.bytes = "0";
  $("live-delay").textContent = "–";
  $("bitrate-received").textContent = "–";
}

function onPlayChunk(bytes) {
  const pl = player;
  pl.received += bytes.length;
  $("bytes-received").textContent = formatBytes(pl.received);
  $("bytes-received").dataset.bytes = String(pl.received);
  if (pl.source) {
    pl.queue.push(reframe(bytes));
    pump();
    return;
  }
  pl.head.push(bytes);
  const joined = concat(pl.head);
  const info = sniff(joined);
  const enough = info && (info.codecs.length > 0 || joined.length > 256 * 1024);
  if (enough) openMediaSource(info);
  else if (!info && joined.length >= 16) {
    log("play-log", `unknown container (first bytes ${hex(joined, 8)})`, "error");
    stopPlaying("error", "unknown container");
  }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function openMediaSource(info) {
  const pl = player;
  const type = mseType(info);
  $("play-mime").textContent = type;
  if (!MediaSource.isTypeSupported(type)) {
    log("play-log", `this browser cannot play ${type} with MSE`, "error");
    stopPlaying("error", "unsupported type");
    return;
  }
  pl.reclusterer = info.base === "video/mp4" ? null : new WebmReclusterer();
  pl.queue = pl.head.map(reframe);
  pl.head = [];
  setState($("play-state"), "waiting", "buffering");
  pl.source = new MediaSource();
  const video = $("video");
  video.src = URL.createObjectURL(pl.source);
  video.parentElement.classList.add("live");
  pl.source.addEventListener("sourceopen", () => {
    URL.revokeObjectURL(video.src);
    try {
      pl.buffer = pl.source.addSourceBuffer(type);
      pl.buffer.mode = $("play-mode").value;
    } catch (err) {
      log("play-log", `cannot create a SourceBuffer for ${type}: ${err.message}`, "error");
      stopPlaying("error", "SourceBuffer failed");
      return;
    }
    pl.buffer.addEventListener("updateend", onUpdateEnd);
    pl.buffer.addEventListener("error", () => log("play-log", "SourceBuffer error", "error"));
    log("play-log", `playing ${type} (${pl.buffer.mode} mode)`);
    pump();
  }, { once: true });
}

/** What to append for received bytes: WebM re-framed (see WebmReclusterer), MP4 as is. */
function reframe(bytes) {
  const pl = player;
  if (!pl.reclusterer) return bytes;
  try {
    return pl.reclusterer.push(bytes);
  } catch (err) {
    log("play-log", `cannot follow the WebM (${err.message}): appending the rest as received`, "error");
    const unread = pl.reclusterer.pending;
    pl.reclusterer = null;
    return concat([unread, bytes]);
  }
}

/** Appends the next queued chunk unless the SourceBuffer is busy. */
function pump() {
  const pl = player;
  const sb = pl.buffer;
  if (!sb || sb.updating || pl.source.readyState !== "open") return;
  // Re-framing yields nothing while a block is incomplete.
  while (pl.queue.length > 0 && pl.queue[0].length === 0) pl.queue.shift();
  if (pl.queue.length === 0) {
    finishWhenDrained();
    return;
  }
  const next = pl.queue.shift();
  try {
    sb.appendBuffer(next);
  } catch (err) {
    if (err.name === "QuotaExceededError" && trimBuffer(true)) {
      pl.queue.unshift(next);
      return;
    }
    log("play-log", `append failed: ${err.message}`, "error");
    stopPlaying("error", "append failed");
  }
}

function onUpdateEnd() {
  const video = $("video");
  const ranges = video.buffered;
  skipForward(video);
  if (video.paused && ranges.length && !player.ended) {
    video.play().catch((err) => log("play-log", `autoplay blocked: ${err.message}`, "warn"));
  }
  if (trimBuffer(false)) return;
  pump();
}

/**
 * Moves the playhead forward to the next buffered range when it is before
 * it, in a gap, or stalled at the very end of an earlier range. Never
 * backwards: at the end of what is buffered the player waits for more.
 */
function skipForward(video) {
  const ranges = video.buffered;
  const t = video.currentTime;
  for (let i = 0; i < ranges.length; i++) {
    if (ranges.start(i) <= t) continue;
    const playable = i > 0 && t < ranges.end(i - 1) - 0.1;
    if (playable) return false;
    video.currentTime = ranges.start(i);
    return true;
  }
  return false;
}

/** Drops media well behind the playhead; true when a removal started. */
function trimBuffer(urgent) {
  const sb = player.buffer;
  const video = $("video");
  if (!sb || sb.updating || !sb.buffered.length) return false;
  const start = sb.buffered.start(0);
  const keep = urgent ? 5 : 60;
  if (video.currentTime - start <= keep) return false;
  sb.remove(start, video.currentTime - keep / 2);
  return true;
}

function tickPlayer() {
  const pl = player;
  const video = $("video");
  const rate = pl.meter ? pl.meter.sample(pl.received) : null;
  $("bitrate-received").textContent = rate === null ? "–" : formatBitrate(rate);
  const ranges = video.buffered;
  if (!ranges.length) return;
  const end = ranges.end(ranges.length - 1);
  const delay = Math.max(0, end - video.currentTime);
  $("live-delay").textContent = `${delay.toFixed(2)} s`;
  $("live-delay").dataset.seconds = delay.toFixed(3);
  if (pl.http) {
    if (video.ended) stopPlaying("ended", "stream ended");
    else if (video.readyState >= 2 && !video.paused) setState($("play-state"), "playing", "playing");
    return;
  }
  if (!pl.ended && video.readyState < 3 && skipForward(video)) {
    log("play-log", "skipped a gap in the buffered media", "warn");
  }
  const maxDelay = Number($("max-delay").value) || 3;
  if (!pl.ended && !video.paused && delay > maxDelay) {
    video.currentTime = Math.max(ranges.start(ranges.length - 1), end - 0.5);
    log("play-log", `fell ${delay.toFixed(1)} s behind: jumped to the live edge`, "warn");
  }
  if (!pl.ended && video.readyState >= 2 && !video.paused) {
    setState($("play-state"), "playing", "playing");
  }
}

/** After the server closed: lets the queued media play out, then ends. */
function finishWhenDrained() {
  const pl = player;
  if (!pl.ended || pl.finished) return;
  const sb = pl.buffer;
  if (sb && (sb.updating || pl.queue.length)) return;
  if (pl.source && pl.source.readyState === "open") {
    try {
      pl.source.endOfStream();
    } catch (err) {
      log("play-log", `endOfStream: ${err.message}`, "warn");
    }
  }
  pl.finished = true;
  const clean = pl.closedText.startsWith("closed 1000");
  stopPlaying(clean ? "ended" : "error", clean ? "stream ended" : pl.closedText);
}

function stopPlaying(state, text) {
  const pl = player;
  pl.finished = true;
  clearInterval(pl.timer);
  pl.timer = null;
  if (pl.ws) {
    pl.ended = true;
    pl.closedText = "closed 1000";
    const ws = pl.ws;
    pl.ws = null;
    ws.onclose = () => log("play-log", "closed by you");
    ws.close(1000, "player stopped");
  }
  if (pl.http && state !== "ended") {
    pl.http = false;
    const video = $("video");
    video.removeAttribute("src");
    video.load();
  }
  setState($("play-state"), state, text);
  $("play-start").disabled = false;
  $("play-stop").disabled = true;
}

// === probe ===

function startProbe() {
  const ids = streamIds();
  if (!ids) {
    setState($("probe-state"), "invalid", "check channel and key");
    return;
  }
  $("probe-start").disabled = true;
  setState($("probe-state"), "connecting", "connecting");
  let got = false;
  openSocket(ids, "probe", "probe-log", {
    open: () => setState($("probe-state"), "waiting", "waiting for a chunk"),
    chunk: (bytes) => {
      got = true;
      showProbe(bytes);
    },
    close: (ev, opened, text) => {
      $("probe-start").disabled = false;
      if (got) setState($("probe-state"), "done", "done");
      else setState($("probe-state"), "error", opened ? closeText(ev) : text.split(" (")[0]);
    },
  });
}

function showProbe(bytes) {
  const info = sniff(bytes);
  const result = $("probe-result");
  result.dataset.container = info ? info.container : "unknown";
  result.dataset.codecs = info ? info.codecs.join(",") : "";
  $("probe-container").textContent = info ? info.container : "unknown";
  $("probe-size").textContent = `${formatBytes(bytes.length)} (${bytes.length} bytes)`;
  $("probe-codecs").textContent = info && info.codecs.length ? info.codecs.join(", ") : "none found";
  $("probe-head").textContent = hex(bytes, 16);
  log("probe-log", `first chunk: ${info ? mseType(info) : "unknown container"}, ${bytes.length} bytes`);
}

// === start-up ===

/** localStorage, which may be missing or refuse (private mode, file://). */
const store = {
  get(name) {
    try {
      return localStorage.getItem(`ws-stream.${name}`);
    } catch {
      return null;
    }
  },
  set(name, value) {
    try {
      localStorage.setItem(`ws-stream.${name}`, value);
    } catch {
      // Remembering the fields is a convenience only.
    }
  },
};

function init() {
  $("server-origin").textContent = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
  const params = new URLSearchParams(location.search);
  const saved = (name) => params.get(name) || store.get(name);
  if (saved("channel")) $("channel").value = saved("channel");
  $("key").value = saved("key") || randomKey();
  for (const id of ["channel", "key"]) {
    $(id).addEventListener("input", () => {
      streamIds();
      store.set(id, $(id).value.trim());
      updateShareLink();
    });
  }
  $("key-random").addEventListener("click", () => {
    $("key").value = randomKey();
    $("key").dispatchEvent(new Event("input"));
  });
  updateShareLink();
  fillRecorderTypes();
  $("publish-start").addEventListener("click", startPublishing);
  $("publish-stop").addEventListener("click", stopPublishing);
  $("play-start").addEventListener("click", startPlaying);
  $("play-stop").addEventListener("click", () => stopPlaying("stopped", "stopped"));
  $("probe-start").addEventListener("click", startProbe);
  $("video").addEventListener("error", () => {
    const err = $("video").error;
    log("play-log", `video error: ${err ? err.message || err.code : "unknown"}`, "error");
    if (player.http) stopPlaying("error", "video error (see the log)");
  });
}

init();
