// Real peers for the browser tests: an SMTP server that holds a real SMTP
// conversation, and an HTTP receiver for Sesame's SMS webhook.
import net from "node:net";
import http from "node:http";

/** A minimal SMTP server (RFC 5321): EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT. */
export function startSmtp() {
  const mails = [];
  const server = net.createServer((socket) => {
    socket.setEncoding("utf8");
    let buffer = "";
    let inData = false;
    let data = "";
    let to = [];
    socket.write("220 sesame-browser-test ESMTP\r\n");
    socket.on("data", (chunk) => {
      buffer += chunk;
      let at;
      while ((at = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            mails.push({ to, data });
            to = [];
            data = "";
            socket.write("250 OK queued\r\n");
          } else {
            data += (line.startsWith(".") ? line.slice(1) : line) + "\r\n";
          }
          continue;
        }
        const upper = line.toUpperCase();
        if (upper.startsWith("EHLO") || upper.startsWith("HELO")) socket.write("250-sesame-browser-test\r\n250 8BITMIME\r\n");
        else if (upper.startsWith("MAIL FROM:")) socket.write("250 OK\r\n");
        else if (upper.startsWith("RCPT TO:")) { to.push(line.slice(8).trim()); socket.write("250 OK\r\n"); }
        else if (upper === "DATA") { inData = true; socket.write("354 end with <CRLF>.<CRLF>\r\n"); }
        else if (upper === "QUIT") { socket.end("221 bye\r\n"); }
        else socket.write("250 OK\r\n");
      }
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `smtp://127.0.0.1:${server.address().port}`,
    mails,
    close: () => server.close(),
  })));
}

/** The quoted-printable soft breaks and `=3D` undone. */
export function decoded(mail) {
  return mail.data.replace(/=\r\n/g, "").replace(/=3D/g, "=");
}

/** An HTTP server that records each JSON POST (the SMS webhook). */
export function startReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      try { received.push(JSON.parse(body)); } catch { received.push({ raw: body }); }
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${server.address().port}/sms`,
    received,
    close: () => server.close(),
  })));
}

/** Waits until `find()` returns something, or fails after `ms`. */
export async function eventually(what, find, ms = 10000) {
  const until = Date.now() + ms;
  for (;;) {
    const found = await find();
    if (found) return found;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
