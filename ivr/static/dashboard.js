// The dashboard's only script, hand-written: refreshes the live queue and the desk's live line,
// and opens the call-tree picture at the start of a call. Every page works without it.
(function () {
  "use strict";

  // A live part of a page (the queue's table, the desk's line): fetch it alone every few
  // seconds and swap it in, then `swapped()`. Without this script the queue page reloads
  // itself (<noscript>), and an agent reloads the desk.
  function refreshLive(live, swapped) {
    var url = live.getAttribute("data-src");
    var every = (Number(live.getAttribute("data-every")) || 5) * 1000;
    var told = document.getElementById(live.getAttribute("data-announce") || "");
    var emergencies = emergencyCount(live);

    // The live part is not itself read out (every refresh would read it all again): a screen
    // reader hears only that a new emergency is waiting, when their count goes up.
    function tell(fresh) {
      var now = emergencyCount(fresh || live);
      if (told && now > emergencies) {
        told.textContent = "New emergency waiting: " + now + " in line";
      } else if (told && now < emergencies) {
        told.textContent = ""; // so the next one is said even if the words are the same
      }
      emergencies = now;
    }

    // Said once when the line stops refreshing, and unsaid when it works again.
    function failed() {
      if (!live.hasAttribute("data-stale") && told) {
        told.textContent = "Live updates failed; retrying.";
      }
      live.setAttribute("data-stale", "true");
    }

    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.redirected) {
            // Signed out meanwhile: the page stays, and what was typed in it (not the
            // sign-in form in its place, mid-call); the line keeps asking, so that a
            // sign-in made anew in another tab brings it back.
            signedOut();
            return SIGNED_OUT;
          }
          signedIn();
          sessionLeft(response.headers.get("X-Session-Left"));
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === SIGNED_OUT) {
            return;
          }
          if (html !== null && live.hasAttribute("data-stale") && told) {
            told.textContent = "";
          }
          if (html !== null && live.hasAttribute("data-held")) {
            // Paused by the reader: the table stays as it is; a new emergency is still said.
            var fresh = document.createElement("div");
            fresh.innerHTML = html; // our own server-rendered, escaped fragment
            live.removeAttribute("data-stale");
            tell(fresh);
            return;
          }
          if (html !== null && live.contains(document.activeElement)) {
            // A field or button in it has the focus (an agent's languages, Set away): swap
            // every part but the one holding it, which waits until the focus leaves. The
            // line itself must not stop: a new emergency shows while the supervisor types.
            if (swapAround(live, html)) {
              live.removeAttribute("data-stale");
              tell();
              if (swapped) {
                swapped();
              }
            } else {
              live.setAttribute("data-paused", "true");
            }
            return;
          }
          if (html !== null) {
            live.innerHTML = html; // our own server-rendered, escaped fragment
            live.removeAttribute("data-stale");
            live.removeAttribute("data-paused");
            tell();
            if (swapped) {
              swapped();
            }
          } else {
            failed();
          }
        })
        .catch(function () {
          failed(); // keep the last table; try again
        })
        .finally(function () {
          window.setTimeout(refresh, every);
        });
    }

    window.setTimeout(refresh, every);
  }

  var SIGNED_OUT = {};

  // The sign-in lasts a fixed time from when it was made, however busy the agent is. Warned
  // a few minutes before, they can sign in again in another tab (its sign-in is this tab's
  // too, the same browser's cookie); once it has ended the page stays as it is, with what
  // was typed in it, and says so, out loud.
  var WARN_SECONDS = 300;
  var session = { ends: null, warned: false, out: false };
  var note = document.getElementById("session-note");

  function sessionLeft(seconds) {
    if (seconds === null || seconds === undefined || seconds === "" || isNaN(Number(seconds))) {
      return;
    }
    session.ends = Date.now() + Number(seconds) * 1000;
    if (Number(seconds) > WARN_SECONDS && session.warned) {
      session.warned = false; // signed in anew meanwhile
      sayNote("", "", "", "");
    }
    checkSession();
  }

  function checkSession() {
    if (session.ends === null || session.out || session.warned) {
      return;
    }
    var left = (session.ends - Date.now()) / 1000;
    if (left <= WARN_SECONDS) {
      session.warned = true;
      var minutes = Math.max(1, Math.ceil(left / 60));
      sayNote(
        "alert",
        "Your sign-in ends in " + minutes + " minute" + (minutes > 1 ? "s" : "") +
          ". To stay signed in, ",
        "sign in again in a new tab",
        ": this page keeps what you typed."
      );
    }
  }

  function signedOut() {
    if (session.out) {
      return;
    }
    session.out = true;
    document.body.setAttribute("data-signed-out", "true");
    sayNote(
      "alert",
      "You are signed out: your sign-in has ended, this page no longer updates, and nothing " +
        "sent from it is done. What you typed is still here. ",
      "Sign in again in a new tab",
      ", then come back and send it."
    );
  }

  function signedIn() {
    if (!session.out) {
      return;
    }
    session.out = false;
    session.warned = false;
    document.body.removeAttribute("data-signed-out");
    sayNote("notice", "You are signed in again: this page updates and sends again.", "", "");
  }

  // The session note's words, with a link to the sign-in page (a new tab: this one keeps
  // what is typed in it). Empty words empty it.
  function sayNote(kind, before, link, after) {
    if (!note) {
      return;
    }
    note.className = kind ? kind + " session-note" : "";
    note.textContent = before;
    if (link) {
      var to = document.createElement("a");
      to.href = note.getAttribute("data-login");
      to.target = "_blank";
      to.rel = "noopener";
      to.textContent = link;
      note.appendChild(to);
      note.appendChild(document.createTextNode(after));
    }
  }

  // Signed out, a form sent would land on the sign-in page, its words lost: it is not sent.
  document.addEventListener("submit", function (event) {
    var action = event.target.getAttribute("action") || "";
    if (session.out && !/\/logout$/.test(action)) {
      event.preventDefault();
      session.out = false;
      signedOut(); // said again
    }
  });

  // A button that stops the live part from changing under whoever reads it (a screen
  // reader's place in the table is lost when it is swapped), until pressed again; kept
  // for the tab, across reloads.
  var HELD = "ivr-live-held";

  function pauseControl(button, live) {
    var storage = null;
    try {
      storage = window.sessionStorage;
      storage.getItem(HELD);
    } catch (ignored) {
      storage = null;
    }
    function show(held) {
      button.setAttribute("aria-pressed", held ? "true" : "false");
      if (held) {
        live.setAttribute("data-held", "true");
      } else {
        live.removeAttribute("data-held");
      }
    }
    show(storage !== null && storage.getItem(HELD) === "true");
    button.hidden = false;
    button.addEventListener("click", function () {
      var held = button.getAttribute("aria-pressed") !== "true";
      show(held);
      if (storage) {
        storage.setItem(HELD, held ? "true" : "false");
      }
    });
  }

  // The emergencies waiting, as the live part shows them ("2 emergencies"; none: nothing).
  function emergencyCount(live) {
    var count = live.querySelector(".emergency-count");
    return count ? parseInt(count.textContent, 10) || 0 : 0;
  }

  // Swap the live part's children for the fresh ones but the one holding the focus, which
  // stays where it is (moved, it would lose the focus), marked paused; the fresh part of
  // its kind (tag and class) is dropped. A part with none in the fresh HTML (the table
  // whose last row was taken: "Nobody is waiting" instead) keeps its place among them,
  // and the rest is swapped all the same. False when no part holds the focus.
  function swapAround(live, html) {
    var fresh = document.createElement("div");
    fresh.innerHTML = html; // our own server-rendered, escaped fragment
    var kept = null;
    var place = 0; // how many parts were before it
    for (var i = 0; i < live.children.length; i += 1) {
      if (live.children[i].contains(document.activeElement)) {
        kept = live.children[i];
        place = i;
      }
    }
    if (!kept) {
      return false;
    }
    var counterpart = null;
    for (var k = 0; k < fresh.children.length; k += 1) {
      var part = fresh.children[k];
      if (part.tagName === kept.tagName && part.className === kept.className) {
        counterpart = part;
      }
    }
    for (var j = live.children.length - 1; j >= 0; j -= 1) {
      if (live.children[j] !== kept) {
        live.removeChild(live.children[j]);
      }
    }
    var before = counterpart ? fresh.children.length : place;
    while (fresh.firstElementChild) {
      var next = fresh.firstElementChild;
      fresh.removeChild(next);
      if (next === counterpart) {
        before = 0;
      } else if (before > 0) {
        live.insertBefore(next, kept);
        before -= 1;
      } else {
        live.appendChild(next);
      }
    }
    kept.setAttribute("data-paused", "true");
    live.removeAttribute("data-paused");
    return true;
  }

  // The tree is far wider than the screen: scroll its frame to the "call" marker.
  function centreTree(frame) {
    var titles = frame.querySelectorAll("g.node > title");
    for (var i = 0; i < titles.length; i += 1) {
      if (titles[i].textContent === "entry") {
        var node = titles[i].parentNode.getBoundingClientRect();
        var box = frame.getBoundingClientRect();
        frame.scrollLeft += node.left - box.left - box.width / 2 + node.width / 2;
        return;
      }
    }
  }

  // The desk: when one of the agent's cases changed (put through, given back, taken back),
  // reload to show it and the actions it now allows, unless the agent is typing into one of
  // its forms: then say so, and leave their words alone. Notes the tab keeps (data-keep)
  // survive the reload: written and left, they do not hold it up. A choice made (the queue,
  // priority or language to send the caller on with) or a box ticked is as unsaved.
  function typing() {
    var fields = document.querySelectorAll("main input[type=text], main textarea");
    for (var i = 0; i < fields.length; i += 1) {
      var kept = fields[i].hasAttribute("data-keep");
      if ((fields[i].value !== "" && !kept) || fields[i] === document.activeElement) {
        return true;
      }
    }
    var choices = document.querySelectorAll("main select");
    for (var j = 0; j < choices.length; j += 1) {
      if (choices[j].selectedIndex !== firstChoice(choices[j])) {
        return true;
      }
    }
    var boxes = document.querySelectorAll("main input[type=checkbox]");
    for (var k = 0; k < boxes.length; k += 1) {
      if (boxes[k].checked !== boxes[k].defaultChecked) {
        return true;
      }
    }
    return false;
  }

  // The option a select came with: the (last) one marked selected, else the first.
  function firstChoice(select) {
    var first = 0;
    for (var i = 0; i < select.options.length; i += 1) {
      if (select.options[i].defaultSelected) {
        first = i;
      }
    }
    return first;
  }

  function deskChanged(live) {
    var said = null;
    return function () {
      var line = live.querySelector("[data-version]");
      if (!line || line.getAttribute("data-version") === live.getAttribute("data-version")) {
        return;
      }
      if (typing()) {
        live.querySelector(".stale-desk").hidden = false;
        // Said once per change: a screen reader would not see the notice appear.
        var told = document.getElementById("desk-announce");
        var version = line.getAttribute("data-version");
        if (told && said !== version) {
          said = version;
          told.textContent =
            (line.hasAttribute("data-offer") ? "A case is offered to you. " : "") +
            "Your cases changed. Reload the desk when you have finished typing.";
        }
      } else {
        window.location.assign(live.getAttribute("data-src").replace(/\/live$/, ""));
      }
    };
  }

  // The desk's notes survive its reloads (a case put through, an agent's leg ended, a refused
  // action): kept in this tab until their case has left the desk.
  var KEPT = "ivr-notes-";

  function keepNotes() {
    var storage;
    try {
      storage = window.sessionStorage;
      storage.getItem(KEPT);
    } catch (ignored) {
      return; // storage blocked: notes last as long as the page
    }
    var shown = {};
    var fields = document.querySelectorAll("textarea[data-keep]");
    for (var i = 0; i < fields.length; i += 1) {
      var key = fields[i].getAttribute("data-keep");
      shown[key] = true;
      if (fields[i].value === "" && storage.getItem(key)) {
        fields[i].value = storage.getItem(key);
      }
      fields[i].addEventListener("input", function (event) {
        storage.setItem(event.target.getAttribute("data-keep"), event.target.value);
      });
    }
    for (var j = storage.length - 1; j >= 0; j -= 1) {
      var name = storage.key(j);
      if (name && name.indexOf(KEPT) === 0 && !shown[name]) {
        storage.removeItem(name);
      }
    }
  }

  // A case offered at the desk must be accepted within IVR_ACCEPT_TIMEOUT, and the agent may
  // be in another tab or window: the browser tells them (once per offer, however often the
  // desk reloads; the same case offered again is a new offer), if they allowed it with
  // "Notify me of offers". A browser that cannot (no Notification, or one that may not be
  // constructed, as on Android) still shows the offer on the desk.
  var NOTIFIED = "ivr-offer-notified";

  function notifyOffer(live) {
    var line = live.querySelector("[data-offer]");
    if (!line || !("Notification" in window) || Notification.permission !== "granted") {
      return;
    }
    var id = line.getAttribute("data-offer");
    var offer = id + "@" + line.getAttribute("data-offer-until");
    try {
      if (window.sessionStorage.getItem(NOTIFIED) === offer) {
        return;
      }
      window.sessionStorage.setItem(NOTIFIED, offer);
      var note = new Notification("Accept your case", {
        body: line.getAttribute("data-offer-text"),
        tag: "ivr-offer-" + id,
        requireInteraction: true,
      });
      note.onclick = function () {
        window.focus();
        note.close();
      };
    } catch (ignored) {
      // the desk's own alert and title still say it
    }
  }

  function offerNotices(button, state) {
    if (!("Notification" in window)) {
      return;
    }
    function show() {
      var permission = Notification.permission;
      button.hidden = permission !== "default";
      state.hidden = permission === "default";
      state.textContent =
        permission === "granted"
          ? "Offers show as notifications."
          : "Notifications are blocked for this site: offers show only here.";
    }
    button.addEventListener("click", function () {
      // Older browsers take a callback and return nothing; newer ones return a promise.
      var asked = Notification.requestPermission(show);
      if (asked && asked.then) {
        asked.then(show);
      }
    });
    show();
  }

  // A page that answers a form refused shows at the form's address, which takes only a
  // POST: reloaded, it would send the form again. The address becomes the page's own.
  function settle(live) {
    var page = live.getAttribute("data-page");
    if (page && window.location.pathname !== page && window.history.replaceState) {
      window.history.replaceState(null, "", page);
    }
  }

  // What an action did, or why it was refused, is in the page as it loads, where a screen
  // reader may skip it: it gets the focus, unless a control asks for it (Accept).
  function focusResult() {
    if (document.querySelector("[autofocus]")) {
      return;
    }
    var result = document.querySelector(
      "main > p.alert[role=alert], main > p.notice[role=status]"
    );
    if (result) {
      result.tabIndex = -1;
      result.focus();
    }
  }

  focusResult();
  if (document.body.hasAttribute("data-session-left")) {
    sessionLeft(document.body.getAttribute("data-session-left"));
    window.setInterval(checkSession, 10000);
  }
  // A case offered at the desk is said once as the desk shows it (Accept has the focus,
  // described by the seconds left, counted down here, where no live region reads them out
  // every second); missed, it is said once as the desk comes back, the agent set away.
  var OFFER_SEEN = "ivr-offer-seen";

  function sayOffer(live) {
    var told = document.getElementById("desk-announce");
    var line = live.querySelector("[data-offer]");
    var left = document.querySelector(".countdown[data-left]");
    var storage = null;
    try {
      storage = window.sessionStorage;
      storage.getItem(OFFER_SEEN);
    } catch (ignored) {
      storage = null;
    }
    if (line && left) {
      sayLater(
        told,
        "A case is offered to you: accept it within " + left.getAttribute("data-left") +
          " seconds, or it goes to the next agent."
      );
      if (storage) {
        storage.setItem(OFFER_SEEN, line.getAttribute("data-offer"));
      }
      return;
    }
    if (storage && storage.getItem(OFFER_SEEN)) {
      storage.removeItem(OFFER_SEEN);
      var missed = document.querySelector('.away-reason[data-reason="not_accepted"]');
      if (missed) {
        sayLater(told, "Offer missed. " + missed.textContent);
      }
    }
  }

  // Words for a status region of a page just loaded: put in at once, a screen reader may
  // not have found the region yet.
  function sayLater(told, words) {
    if (told) {
      window.setTimeout(function () {
        told.textContent = words;
      }, 500);
    }
  }

  function countDown() {
    var counters = document.querySelectorAll(".countdown[data-left]");
    if (!counters.length) {
      return;
    }
    var start = Date.now();
    window.setInterval(function () {
      var gone = Math.floor((Date.now() - start) / 1000);
      for (var i = 0; i < counters.length; i += 1) {
        var left = Number(counters[i].getAttribute("data-left")) - gone;
        counters[i].textContent = String(Math.max(0, left));
      }
    }, 1000);
  }

  var queue = document.getElementById("queue-live");
  if (queue) {
    settle(queue);
    var pause = document.getElementById("pause-live");
    if (pause) {
      pauseControl(pause, queue);
    }
    refreshLive(queue);
  }
  var desk = document.getElementById("desk-live");
  if (desk) {
    settle(desk);
    var changed = deskChanged(desk);
    refreshLive(desk, function () {
      notifyOffer(desk);
      changed();
    });
    notifyOffer(desk);
    sayOffer(desk);
    countDown();
    keepNotes();
  }
  var notify = document.getElementById("notify-offers");
  if (notify) {
    offerNotices(notify, document.getElementById("notify-state"));
  }
  var tree = document.getElementById("tree-picture");
  if (tree) {
    centreTree(tree);
  }
})();
