// The Socket.IO peer on Node: what a team would otherwise deploy on Node.
//
// Same semantics as the python-socketio peer: channels are rooms; a client
// sends its connection JWT in the Socket.IO auth payload; a middleware
// verifies it (HS256 with node's crypto HMAC, constant-time comparison,
// "sub" required, "exp" checked) and the connection handler joins the rooms
// of its "channels" claim, in the same tick the connect is acknowledged.
// A publication reaches a room as the event "pub" with {channel, data}.
// The publish API has exporthub's shapes (POST /api/publish, /api/broadcast,
// header X-API-Key) on the same HTTP server.
//
// Run: node server.js --port 18082   (BENCH_SECRET, BENCH_API_KEY from env)
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "18082"));
const secret = process.env.BENCH_SECRET || "bench-token-secret-not-for-production";
const apiKey = process.env.BENCH_API_KEY || "bench-api-key";
const maxBody = 1024 * 1024;

function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
}

// Returns the claims of a valid token, or null.
function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header;
  let claims;
  try {
    header = decodeSegment(parts[0]);
    claims = decodeSegment(parts[1]);
  } catch {
    return null;
  }
  if (!header || header.alg !== "HS256") return null;
  const expected = crypto
    .createHmac("sha256", secret)
    .update(`${parts[0]}.${parts[1]}`)
    .digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    return null;
  }
  if (!claims || typeof claims.sub !== "string") return null;
  if (typeof claims.exp === "number" && claims.exp <= Date.now() / 1000) return null;
  const channels = claims.channels === undefined ? [] : claims.channels;
  if (!Array.isArray(channels) || !channels.every((c) => typeof c === "string" && c)) {
    return null;
  }
  return { sub: claims.sub, channels };
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

let io;

function api(req, res) {
  if (req.method !== "POST") return reply(res, 405, { error: { code: 107 } });
  if (req.headers["x-api-key"] !== apiKey) {
    return reply(res, 401, { error: { code: 101, message: "unauthorized" } });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > maxBody) req.destroy();
    else chunks.push(chunk);
  });
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return reply(res, 400, { error: { code: 107, message: "bad request" } });
    }
    if (req.url === "/api/publish" && typeof body.channel === "string") {
      io.to(body.channel).emit("pub", { channel: body.channel, data: body.data });
      return reply(res, 200, { result: {} });
    }
    if (req.url === "/api/broadcast" && Array.isArray(body.channels)) {
      for (const channel of body.channels) {
        if (typeof channel === "string") {
          io.to(channel).emit("pub", { channel, data: body.data });
        }
      }
      return reply(res, 200, { result: { responses: body.channels.map(() => ({ result: {} })) } });
    }
    return reply(res, 404, { error: { code: 104, message: "method not found" } });
  });
}

const server = http.createServer(api);
io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: 25000,
  pingTimeout: 20000,
});

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (claims === null) return next(new Error("invalid token"));
  socket.data.channels = claims.channels;
  next();
});

io.on("connection", (socket) => {
  socket.join(socket.data.channels);
});

server.listen({ host, port, backlog: 4096 });

function stop() {
  io.close();
  server.close();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
