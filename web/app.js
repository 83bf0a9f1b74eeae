// tessera's join page: one WebRTC connection to the server, signaling
// protocol v1 (docs/signaling.md) over MQTT.js on the broker's websocket
// listener. Query parameters fill the form (room, name, role, peer,
// simulcast, user); `autojoin=1` joins at once; `audio=raw` turns the
// browser's voice processing off; `relay=1` uses TURN only.
"use strict";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const ID = /^[A-Za-z0-9_-]{1,64}$/;

// What the test harness and curious people can read.
const tessera = (window.tessera = { state: null, errors: [], peer: null, joined: false, left: false });

let call = null; // the current call, while in one

function randomId() {
  const a = new Uint8Array(6);
  crypto.getRandomValues(a);
  return "web-" + Array.from(a, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 10);
}

function showError(where, text) {
  $(where).textContent = text;
  if (text) tessera.errors.push(text);
}

// Words for the server's error codes; the server's own message follows.
const WHY = {
  "room-full": "The room is full.",
  "too-many-rooms": "The server has no room for another call.",
  "rate-limited": "Too many messages; slowing down.",
  "bad-sdp": "The server could not use this browser's offer.",
  "no-h264": "This browser offers no H.264 video, which the server needs.",
  "no-opus": "This browser offers no Opus audio, which the server needs.",
  "no-media": "The offer had neither audio nor video.",
  "internal": "The server had a problem.",
  "video-too-large": "Your camera sends a picture larger than the server takes.",
  "unknown-layout": "No such layout.",
  "unknown-peer": "Nobody by that name is in the room.",
  "recording-off": "This server does not record.",
};

async function loadConfig() {
  const r = await fetch("/config.json", { cache: "no-store" });
  if (!r.ok) throw new Error(`the server's settings did not load (HTTP ${r.status})`);
  return r.json();
}

function brokerUrl(cfg) {
  if (cfg.mqttUrl) return cfg.mqttUrl;
  if (!cfg.wsPort) throw new Error("this server names no websocket broker for pages (tessera serve --page-mqtt-url)");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.hostname}:${cfg.wsPort}/mqtt`;
}

class Call {
  constructor(cfg, opts) {
    this.cfg = cfg;
    this.opts = opts;
    const root = cfg.topicRoot;
    this.topics = {
      in: `${root}/${opts.room}/in/${opts.peer}`,
      out: `${root}/${opts.room}/out/${opts.peer}`,
      state: `${root}/${opts.room}/state`,
      control: `${root}/${opts.room}/control`,
    };
    this.local = null;
    this.videoSender = null;
    this.ended = false;
    // Cluster servers stamp an epoch on their messages: a lower one than
    // the highest seen is an old owner's; `joined` is the one this
    // connection is for. Every offer has an id the server stamps back.
    this.epochs = { highest: 0, joined: 0 };
    this.offers = 0;
    this.offerId = null;
    this.answered = false;
    tessera.rejoins = 0;
  }

  async start() {
    const { opts } = this;
    if (opts.role === "participant") {
      try {
        this.local = await navigator.mediaDevices.getUserMedia({
          video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
          // `?audio=raw`: no echo cancelling, noise suppression or gain
          // control (music, a line-in, a test tone that must stay a tone).
          audio: opts.rawAudio
            ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
            : { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
      } catch (e) {
        showError("error", `No camera or microphone (${e.name}): you join as a viewer.`);
        opts.role = "viewer";
      }
    }
    this.buildPc();
    $("mic").disabled = !this.local || !this.local.getAudioTracks().length;
    $("cam").disabled = !this.local || !this.local.getVideoTracks().length;
    this.connectBroker();
  }

  // A peer connection for this page's tracks (a rejoin builds another).
  buildPc() {
    const { opts } = this;
    // `?relay=1`: relayed candidates only (to check a TURN setup).
    const policy = query.get("relay") === "1" ? "relay" : "all";
    this.pc = new RTCPeerConnection({ iceServers: this.cfg.iceServers, iceTransportPolicy: policy });
    tessera.pc = this.pc;
    if (this.local) {
      const [audio] = this.local.getAudioTracks();
      const [video] = this.local.getVideoTracks();
      if (audio) this.pc.addTransceiver(audio, { direction: "sendrecv", streams: [this.local] });
      else this.pc.addTransceiver("audio", { direction: "recvonly" });
      if (video) {
        const init = { direction: "sendrecv", streams: [this.local] };
        if (opts.simulcast) {
          init.sendEncodings = [
            { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
            { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
            { rid: "f", maxBitrate: 1500000 },
          ];
        }
        this.videoSender = this.pc.addTransceiver(video, init).sender;
      } else {
        this.pc.addTransceiver("video", { direction: "recvonly" });
      }
    } else {
      this.pc.addTransceiver("audio", { direction: "recvonly" });
      this.pc.addTransceiver("video", { direction: "recvonly" });
    }

    const remote = new MediaStream();
    const pc = this.pc;
    this.pc.ontrack = (e) => {
      if (pc !== this.pc) return;
      remote.addTrack(e.track);
      const v = $("composite");
      if (v.srcObject !== remote) v.srcObject = remote;
      v.play().catch(() => showError("error", "Click the picture to hear the call (the browser blocked sound)."));
      if (e.track.kind === "audio") this.listen(remote);
    };
    this.pc.onconnectionstatechange = () => this.status();
    this.pc.onicecandidate = (e) => {
      if (pc !== this.pc) return;
      const c = e.candidate ? { type: "candidate", ...e.candidate.toJSON() } : { type: "candidate", candidate: null };
      this.publish(this.topics.in, c);
    };
  }

  connectBroker() {
    const { opts } = this;
    const mqttOpts = {
      clientId: opts.peer,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
      will: { topic: this.topics.in, payload: JSON.stringify({ type: "leave", will: true }), qos: 1, retain: false },
    };
    if (opts.user) {
      mqttOpts.username = opts.user;
      mqttOpts.password = opts.password;
    }
    this.mqtt = mqtt.connect(brokerUrl(this.cfg), mqttOpts);
    this.mqtt.on("connect", () => this.connected());
    this.mqtt.on("message", (topic, payload) => this.message(topic, payload));
    this.mqtt.on("error", (e) => this.brokerError(e));
    this.mqtt.on("offline", () => this.status("broker unreachable; retrying…"));
    // A broker that refuses a login may just close the connection (the
    // embedded one does): twice closed before ever connecting is a refusal.
    this.refusals = 0;
    this.mqtt.on("close", () => {
      if (this.everConnected || this.ended || ++this.refusals < 2) return;
      this.end();
      leaveUi(opts.user ? "The broker refused this user name or password." : "The broker wants a user name and password.");
      $("credentials").hidden = false;
    });
  }

  publish(topic, msg) {
    if (!this.mqtt) return;
    this.mqtt.publish(topic, JSON.stringify(msg), { qos: 1 }, (err) => {
      if (err) showError("error", `Not sent: ${err.message}`);
    });
  }

  connected() {
    this.everConnected = true;
    this.mqtt.subscribe([this.topics.out, this.topics.state], { qos: 0 }, async (err, granted) => {
      if (err || (granted || []).some((g) => g.qos === 128)) {
        return showError("error", "The broker does not let this page read its topics (ACL).");
      }
      if (this.offered) return; // a reconnect: the call goes on
      this.offered = true;
      await this.offer();
    });
  }

  async offer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.offerId = `${this.opts.peer.slice(0, 40)}-${Date.now().toString(36)}-${++this.offers}`;
    this.answered = false;
    const msg = { type: "offer", sdp: offer.sdp, name: this.opts.name || this.opts.peer, id: this.offerId };
    const view = viewSize();
    if (view) msg.view = view;
    tessera.view = view;
    this.publish(this.topics.in, msg);
    this.status("joining…");
    // A cluster node may die before it answers: offer again.
    const id = this.offerId;
    setTimeout(() => {
      if (!this.ended && !this.answered && this.offerId === id && this.epochs.highest > 0) this.rejoin("no answer");
    }, 6000);
  }

  // The room moved to another node: a new connection, the same tracks,
  // the same peer id (so the same place in the room).
  async rejoin(why) {
    if (this.ended) return;
    tessera.rejoins++;
    const old = this.pc;
    this.buildPc();
    try {
      old.close();
    } catch {}
    this.status(`moving to another server (${why})…`);
    await this.offer();
  }

  brokerError(e) {
    const code = e && e.code;
    if (code === 4 || code === 5 || code === 134 || code === 135) {
      // Bad user name or password / not authorised: ask, do not hammer.
      this.end();
      leaveUi("The broker wants a user name and password.");
      $("credentials").hidden = false;
      return;
    }
    showError("error", `Broker: ${e.message || e}`);
  }

  async message(topic, payload) {
    const text = payload.toString();
    if (topic === this.topics.state) return this.roomState(text);
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    // An old owner's message, or one for an earlier offer of this page.
    if (typeof msg.epoch === "number" && msg.epoch < this.epochs.highest) return;
    if (msg.offer && msg.offer !== this.offerId) return;
    try {
      switch (msg.type) {
        case "answer":
          if (this.answered) break;
          this.answered = true;
          if (typeof msg.epoch === "number") {
            this.epochs.highest = Math.max(this.epochs.highest, msg.epoch);
            this.epochs.joined = Math.max(this.epochs.joined, msg.epoch);
          }
          await this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
          tessera.joined = true;
          this.status();
          break;
        case "rejoin":
          if (typeof msg.epoch === "number") {
            if (msg.epoch <= this.epochs.joined) break; // already joined that owner
            this.epochs.highest = Math.max(this.epochs.highest, msg.epoch);
            this.epochs.joined = msg.epoch;
          }
          await this.rejoin(msg.reason || "moved");
          break;
        case "candidate":
          if (msg.candidate) {
            await this.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex });
          }
          break;
        case "send":
          await this.applyHint(msg);
          break;
        case "error":
          showError("error", `${WHY[msg.code] || "The server refused."} ${msg.message || ""} (${msg.code})`);
          break;
        case "bye":
          if (msg.reason === "moved") {
            await this.rejoin("moved");
            break;
          }
          this.end();
          leaveUi(`The server ended the call: ${msg.reason}.`);
          break;
      }
    } catch (e) {
      showError("error", String(e));
    }
  }

  // The server's size hint: scale the camera down to just cover the tile.
  async applyHint(h) {
    const s = this.videoSender;
    if (!s || !s.track) return;
    const p = s.getParameters();
    if (!p.encodings || !p.encodings.length) return;
    if (this.opts.simulcast) {
      // Every layer keeps flowing; the server decodes the one it needs.
      tessera.hint = h;
      return;
    }
    const { width, height } = s.track.getSettings();
    const scale = width && height ? Math.max(1, Math.min(width / h.width, height / h.height)) : 1;
    p.encodings[0].scaleResolutionDownBy = scale;
    if (h.fps) p.encodings[0].maxFramerate = h.fps;
    if (h.bitrate) p.encodings[0].maxBitrate = h.bitrate;
    await s.setParameters(p);
    tessera.hint = { ...h, scale };
  }

  roomState(text) {
    if (!text) {
      tessera.state = null;
      return this.renderMembers([]);
    }
    let state;
    try {
      state = JSON.parse(text);
    } catch {
      return;
    }
    tessera.state = state;
    if (typeof state.epoch === "number") {
      this.epochs.highest = Math.max(this.epochs.highest, state.epoch);
      // A newer owner than this connection's, which this page was not told about.
      if (this.answered && state.epoch > this.epochs.joined) {
        this.epochs.joined = state.epoch;
        this.rejoin("the room moved");
      }
    }
    this.renderMembers(state.participants || []);
    $("rec").hidden = !state.recording;
    $("record").textContent = state.recording ? "Stop recording" : "Record";
    const sel = $("layout");
    if (state.layout && sel.value !== state.layout) {
      if (![...sel.options].some((o) => o.value === state.layout)) sel.add(new Option(state.layout, state.layout));
      sel.value = state.layout;
    }
    this.status();
  }

  renderMembers(list) {
    const ul = $("members");
    ul.replaceChildren(
      ...list.map((p) => {
        const li = document.createElement("li");
        li.textContent = p.name + (p.peer === this.opts.peer ? " (you)" : "") + " ";
        const role = document.createElement("span");
        role.className = "role";
        role.textContent = p.role + (p.audio ? "" : ", muted");
        li.append(role);
        li.classList.toggle("speaking", !!p.speaking);
        li.dataset.peer = p.peer;
        return li;
      }),
    );
  }

  status(text) {
    const members = tessera.state ? tessera.state.participants.length : 0;
    $("status").textContent = text || `${this.pc.connectionState} · ${members} in the room`;
  }

  // A level meter of what this page hears; the analyser also serves tests.
  listen(stream) {
    if (this.analyser) {
      // A new connection (a rejoin): the meter follows its stream.
      if (this.source) this.source.disconnect();
      this.source = this.audioCtx.createMediaStreamSource(stream);
      this.source.connect(this.analyser);
      return;
    }
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(stream);
    this.source = src;
    const an = ctx.createAnalyser();
    an.fftSize = 4096;
    src.connect(an);
    this.audioCtx = ctx;
    this.analyser = an;
    const buf = new Float32Array(an.fftSize);
    const tick = () => {
      if (this.ended) return;
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      $("level").value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      requestAnimationFrame(tick);
    };
    tick();
  }

  toggle(kind, button, on, off) {
    const track = this.local && (kind === "audio" ? this.local.getAudioTracks() : this.local.getVideoTracks())[0];
    if (!track) return;
    track.enabled = !track.enabled;
    button.setAttribute("aria-pressed", String(!track.enabled));
    button.textContent = track.enabled ? on : off;
  }

  record() {
    const on = !(tessera.state && tessera.state.recording);
    this.publish(this.topics.control, { type: "record", action: on ? "start" : "stop", from: this.opts.peer });
  }

  layout(name) {
    this.publish(this.topics.control, { type: "layout", layout: name, from: this.opts.peer });
  }

  // Explicit leave first (the server honours it at once), then close.
  leave() {
    if (this.ended || !this.mqtt) return this.end();
    this.mqtt.publish(this.topics.in, JSON.stringify({ type: "leave" }), { qos: 1 }, () => this.end());
    setTimeout(() => this.end(), 1000);
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    try {
      this.pc.close();
    } catch {}
    if (this.local) this.local.getTracks().forEach((t) => t.stop());
    if (this.audioCtx) this.audioCtx.close();
    if (this.mqtt) this.mqtt.end(true);
  }
}

// The downstream size this screen needs: the smallest of a few standard
// sizes that covers the picture area in device pixels (standard sizes, so
// pages on similar screens share one encoder on the server). None when the
// screen is as large as a 720p canvas: the server sends its canvas anyway.
const VIEW_SIZES = [[320, 180], [480, 270], [640, 360], [960, 540]];
function viewSize() {
  // The picture area as style.css lays it out: beside the 260 px panel on
  // wide screens, above it (at most 70 % of the height) on narrow ones.
  const dpr = window.devicePixelRatio || 1;
  const narrow = window.innerWidth <= 700;
  const w = (narrow ? window.innerWidth : window.innerWidth - 284) * dpr;
  const h = (narrow ? window.innerHeight * 0.7 : window.innerHeight) * dpr;
  const fit = VIEW_SIZES.find(([sw, sh]) => sw >= w || sh >= h);
  return fit ? { width: fit[0], height: fit[1] } : null;
}

function leaveUi(why) {
  $("call").hidden = true;
  $("join").hidden = false;
  $("composite").srcObject = null;
  showError("join-error", why || "");
  tessera.left = true;
  call = null;
}

async function join(cfg) {
  const room = $("room").value.trim();
  if (!ID.test(room)) return showError("join-error", "A room name is letters, digits, - and _ (at most 64).");
  const user = $("user").value.trim();
  if (cfg.login && !user) return showError("join-error", "This server wants a user name and password.");
  const peer = user || query.get("peer") || sessionStorage.getItem("tessera-peer") || randomId();
  if (!ID.test(peer)) return showError("join-error", "Your id must be letters, digits, - and _ (at most 64).");
  sessionStorage.setItem("tessera-peer", peer);
  tessera.peer = peer;
  const opts = {
    room,
    peer,
    name: $("name").value.trim().slice(0, 64),
    role: document.querySelector("input[name=role]:checked").value,
    simulcast: $("simulcast").checked,
    rawAudio: query.get("audio") === "raw",
    user,
    password: $("password").value,
  };
  showError("join-error", "");
  showError("error", "");
  $("join").hidden = true;
  $("call").hidden = false;
  $("room-title").textContent = room;
  if (location.pathname !== `/room/${room}`) history.replaceState(null, "", `/room/${room}${location.search}`);
  tessera.left = false;
  call = new Call(cfg, opts);
  tessera.call = call;
  await call.start();
}

(async () => {
  const cfg = await loadConfig();
  tessera.config = cfg;
  const sel = $("layout");
  for (const l of cfg.layouts) sel.add(new Option(l, l));
  sel.value = cfg.defaultLayout;
  sel.onchange = () => call && call.layout(sel.value);
  $("mic").onclick = (e) => call && call.toggle("audio", e.target, "Mute microphone", "Unmute microphone");
  $("cam").onclick = (e) => call && call.toggle("video", e.target, "Turn camera off", "Turn camera on");
  $("leave").onclick = () => {
    if (call) call.leave();
    leaveUi("You left the call.");
  };
  $("composite").onclick = (e) => e.target.play();
  $("record").hidden = !cfg.recording;
  $("record").onclick = () => call && call.record();

  const fromPath = location.pathname.match(/^\/room\/([^/]+)$/);
  $("room").value = query.get("room") || (fromPath ? decodeURIComponent(fromPath[1]) : "");
  $("name").value = query.get("name") || localStorage.getItem("tessera-name") || "";
  if (query.get("role") === "viewer") document.querySelector("input[value=viewer]").checked = true;
  $("simulcast").checked = query.get("simulcast") === "1";
  if (cfg.login) $("credentials").hidden = false;
  if (query.get("user")) {
    $("credentials").hidden = false;
    $("user").value = query.get("user");
  }
  $("join").onsubmit = (e) => {
    e.preventDefault();
    localStorage.setItem("tessera-name", $("name").value.trim());
    join(cfg).catch((err) => showError("error", String(err)));
  };
  if (query.get("autojoin") === "1") $("join").requestSubmit();
})().catch((e) => showError("join-error", String(e)));

// For tests and diagnostics: what share of the composite is near `rgb`,
// and the loudest level (dB) near `hz` in what the page hears.
tessera.colourShare = (rgb, tolerance = 40) => {
  const v = $("composite");
  if (!v.videoWidth) return 0;
  const c = (tessera.canvas ||= document.createElement("canvas"));
  c.width = 160;
  c.height = 90;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(v, 0, 0, c.width, c.height);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let near = 0;
  for (let i = 0; i < d.length; i += 4) {
    const dr = d[i] - rgb[0], dg = d[i + 1] - rgb[1], db = d[i + 2] - rgb[2];
    if (Math.sqrt(dr * dr + dg * dg + db * db) < tolerance) near++;
  }
  return near / (c.width * c.height);
};
tessera.toneLevel = (hz) => {
  const an = call && call.analyser;
  if (!an) return -Infinity;
  const bins = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(bins);
  const at = Math.round((hz / (an.context.sampleRate / 2)) * bins.length);
  let best = -Infinity;
  for (let i = Math.max(0, at - 3); i <= Math.min(bins.length - 1, at + 3); i++) best = Math.max(best, bins[i]);
  return best;
};
// What this page receives of the composite, from the browser's own
// statistics (freezes as WebRTC counts them).
tessera.videoStats = async () => {
  const out = { bytes: 0, frames: 0, freezes: 0, frozenSeconds: 0, packetsLost: 0, packetsReceived: 0 };
  if (!call || !call.pc) return out;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video") return;
    out.bytes = s.bytesReceived || 0;
    out.frames = s.framesDecoded || 0;
    out.freezes = s.freezeCount || 0;
    out.frozenSeconds = s.totalFreezesDuration || 0;
    out.packetsLost = s.packetsLost || 0;
    out.packetsReceived = s.packetsReceived || 0;
  });
  return out;
};
tessera.framesDecoded = async () => {
  if (!call || !call.pc) return 0;
  let n = 0;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0;
  });
  return n;
};
