// Sesame pages: small progressive enhancements. Every page works without it.
(function () {
  "use strict";

  // An authorization response sent with response_mode=form_post goes on
  // to the app at once (without script, the user presses the button).
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    form.submit();
  });

  // The resend button counts down its cooldown.
  document.querySelectorAll("button[data-wait]").forEach(function (button) {
    var left = parseInt(button.getAttribute("data-wait"), 10) || 0;
    var template = button.getAttribute("data-wait-text") || "";
    var ready = button.getAttribute("data-ready");
    if (left <= 0) return;
    var tick = function () {
      left -= 1;
      if (left <= 0) {
        button.disabled = false;
        button.textContent = ready;
        return;
      }
      button.textContent = template.replace("{}", String(left));
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 1000);
  });

  // Inline validation of the sign-in field, announced through the alert region.
  document.querySelectorAll("form[data-validate=identifier]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var input = form.querySelector("#identifier");
      var error = form.querySelector("#form-error");
      if (input && error && input.value.trim() === "") {
        event.preventDefault();
        error.textContent = input.getAttribute("data-empty");
        error.hidden = false;
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    });
  });

  // The code page follows a magic link opened elsewhere: poll, then move on.
  var poll = document.querySelector("[data-status-poll]");
  if (poll && poll.getAttribute("data-status-poll")) {
    var url = poll.getAttribute("data-status-poll");
    var body = new URLSearchParams({ csrf: poll.getAttribute("data-csrf") });
    // Once a form of the page is sent (the code entered), that answer leads
    // on: a poll answered meanwhile must not send the tab elsewhere.
    var leaving = false;
    document.addEventListener("submit", function () { leaving = true; }, true);
    var check = function () {
      if (leaving) return;
      fetch(url, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { next: null }; })
        .then(function (answer) {
          if (leaving) return;
          if (answer.next) { window.location.assign(answer.next); } else { setTimeout(check, 2000); }
        })
        .catch(function () { setTimeout(check, 5000); });
    };
    setTimeout(check, 2000);
  }
})();
