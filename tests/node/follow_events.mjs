// Follows a user's channels with the unmodified `centrifuge` client from npm
// and reports, one JSON object per line on stdout, everything the client
// sees: connecting (with code), connected, subscribed (with recovery flags
// and position) and publications (with offset). It reconnects on its own
// after drops; a line "quit" on stdin disconnects and exits.
//
// usage: node follow_events.mjs WEBSOCKET_URL SERVER_URL API_KEY
import { createInterface } from "node:readline";
import { Centrifuge } from "centrifuge";
import WebSocket from "ws";

const [wsUrl, server, apiKey] = process.argv.slice(2);
const report = (event) => process.stdout.write(JSON.stringify(event) + "\n");

async function getToken() {
  const response = await fetch(`${server}/api/public/auth/socket`, {
    method: "POST",
    headers: { "X-AUTH-TOKEN": apiKey },
  });
  if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
  return (await response.json()).token;
}

const client = new Centrifuge(wsUrl, {
  websocket: WebSocket,
  getToken,
  minReconnectDelay: 50,
  maxReconnectDelay: 500,
});

client.on("connecting", (ctx) => report({ type: "connecting", code: ctx.code, reason: ctx.reason }));
client.on("connected", () => report({ type: "connected" }));
client.on("subscribed", (ctx) =>
  report({
    type: "subscribed",
    channel: ctx.channel,
    wasRecovering: ctx.wasRecovering,
    recovered: ctx.recovered,
    offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
    epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
  }),
);
client.on("publication", (ctx) =>
  report({ type: "publication", channel: ctx.channel, offset: ctx.offset, data: ctx.data }),
);

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "quit") {
    client.disconnect();
    process.exit(0);
  }
});

client.connect();
