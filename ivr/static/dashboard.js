// The dashboard's only script, hand-written: refreshes the live queue and the desk's live line,
// and opens the call-tree picture at the start of a call. Every page works without it.
(function () {
  "use strict";

  // A live part of a page (the queue's table, the desk's line): fetch it alone every few
  // seconds and swap it in (`swapIn`), then `swapped()`. Without this script the queue page
  // says it does not refresh itself, with a link that does, and an agent reloads the desk.
  // Returns what refreshes it at once (updates resumed).
  function refreshLive(live, swapped) {
    var url = live.getAttribute("data-src");
    var every = (Number(live.getAttribute("data-every")) || 5) * 1000;
    var told = document.getElementById(live.getAttribute("data-announce") || "");
    var seen = emergencyTickets(live);
    var emergencies = emergencyCount(live);
    var repeated = repeatedNumbers(live);
    var timer = null;
    var busy = false;

    // The live part is not itself read out (every refresh would read it all again): a screen
    // reader hears only of an emergency it was not told of, by its ticket (one taken and
    // another come leave the count as it was), and of a number newly holding several places.
    function tell(fresh) {
      var tickets = emergencyTickets(fresh);
      var count = emergencyCount(fresh);
      var added = tickets.filter(function (ticket) {
        return seen.indexOf(ticket) < 0;
      });
      var numbers = repeatedNumbers(fresh);
      var again = numbers.filter(function (number) {
        return repeated.indexOf(number) < 0;
      });
      var words = [];
      if (added.length) {
        words.push(
          (added.length === 1
            ? "New emergency waiting: ticket "
            : "New emergencies waiting: tickets ") +
            added.join(", ") + ", " + count + " in line."
        );
      } else if (count > emergencies) {
        words.push("New emergency waiting: " + count + " in line."); // past the tickets listed
      }
      if (again.length) {
        words.push("The same number holds several places on the line: " + again.join(", ") + ".");
      }
      if (words.length) {
        say(told, words.join(" "));
      } else if (told && count < emergencies) {
        told.textContent = ""; // said and answered: not there to be read again as news
      }
      seen = tickets;
      emergencies = count;
      repeated = numbers;
    }

    // Said once when the line stops refreshing, and unsaid when it works again.
    function failed() {
      if (!live.hasAttribute("data-stale") && told) {
        told.textContent = "Live updates failed; retrying.";
      }
      live.setAttribute("data-stale", "true");
    }

    function refresh() {
      busy = true;
      timer = null;
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
          if (html === null) {
            failed();
            return;
          }
          if (live.hasAttribute("data-stale") && told) {
            told.textContent = "";
          }
          var fresh = document.createElement("div");
          fresh.innerHTML = html; // our own server-rendered, escaped fragment
          live.removeAttribute("data-stale");
          tell(fresh);
          swapIn(live, fresh);
          if (swapped) {
            swapped();
          }
        })
        .catch(function () {
          failed(); // keep the last table; try again
        })
        .finally(function () {
          busy = false;
          timer = window.setTimeout(refresh, every);
        });
    }

    timer = window.setTimeout(refresh, every);
    return {
      now: function () {
        if (!busy) {
          window.clearTimeout(timer);
          refresh();
        }
      },
    };
  }

  // Words for a page's status region. The same words again (an emergency's, back in line)
  // are said again: emptied first, then put back a moment later.
  function say(told, words) {
    if (!told) {
      return;
    }
    if (told.textContent !== words) {
      told.textContent = words;
      return;
    }
    told.textContent = "";
    window.setTimeout(function () {
      if (told.textContent === "") {
        told.textContent = words;
      }
    }, 100);
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

  // A button that stops the waiting table from changing under whoever reads it (a screen
  // reader's place in the table is lost when it is swapped), until pressed again; the rest
  // of the live part (the counts, an emergency come since) keeps refreshing. Pressed, it
  // looks pressed and says since when the table is as it is. Not kept across a reload: a
  // page loaded is asked for as it is now, and a pause forgotten would hide the line.
  function pauseControl(button, live, state, refresher) {
    function show(held) {
      button.setAttribute("aria-pressed", held ? "true" : "false");
      state.hidden = !held;
      if (held) {
        var waiting = waitingPart(live);
        live.setAttribute("data-held", "true");
        if (waiting) {
          hold(waiting, updatedAt(live));
        }
        var asOf = waiting ? waiting.getAttribute("data-as-of") : updatedAt(live);
        state.textContent =
          "The waiting table is paused, as of " + asOf +
          "; the counts still update. Press again to resume.";
        notePaused(live);
      } else {
        live.removeAttribute("data-held");
        state.textContent = "";
        refresher.now();
      }
    }
    button.hidden = false;
    document.getElementById("live-note").hidden = false;
    button.addEventListener("click", function () {
      show(button.getAttribute("aria-pressed") !== "true");
    });
  }

  // The emergencies waiting, as the live part counts them ("2 emergencies"; none: nothing).
  function emergencyCount(live) {
    var count = live.querySelector(".emergency-count");
    return count ? parseInt(count.textContent, 10) || 0 : 0;
  }

  // Their tickets, as the live part lists them (data-emergencies).
  function emergencyTickets(live) {
    var line = live.querySelector("[data-emergencies]");
    return line ? line.getAttribute("data-emergencies").split(" ").filter(Boolean) : [];
  }

  // The numbers (masked) holding several places on the line.
  function repeatedNumbers(live) {
    var found = live.querySelectorAll(".repeated-number[data-caller]");
    var numbers = [];
    for (var i = 0; i < found.length; i += 1) {
      numbers.push(found[i].getAttribute("data-caller"));
    }
    return numbers;
  }

  // When the live part was made, as it says ("11:31:32 UTC").
  function updatedAt(live) {
    var line = live.querySelector("[data-updated]");
    return line ? line.getAttribute("data-updated") : "";
  }

  // The waiting cases' table, or "Nobody is waiting" in its place.
  function waitingPart(live) {
    for (var i = 0; i < live.children.length; i += 1) {
      if (live.children[i].hasAttribute("data-waiting")) {
        return live.children[i];
      }
    }
    return null;
  }

  // A part left as it was, and since when.
  function hold(part, asOf) {
    part.setAttribute("data-paused", "true");
    if (!part.hasAttribute("data-as-of")) {
      part.setAttribute("data-as-of", asOf);
    }
  }

  // Swap the live part's children for the fresh ones, but those the reader is at: one that
  // holds the focus (moved, it would lose it), one with a field changed and not sent (a reason
  // typed, a priority chosen, then the focus gone elsewhere: lost with it), and, paused, the
  // waiting table. Each stays where it is, marked paused, and the fresh part of its kind
  // (tag and class; paused, whatever stands for the waiting cases) is dropped. A part with
  // none in the fresh HTML (the table whose last row was taken: "Nobody is waiting" instead)
  // keeps its place among them, and the rest is swapped all the same.
  function swapIn(live, fresh) {
    var held = live.hasAttribute("data-held");
    var asOf = updatedAt(live); // what the parts kept show: the time of the last swap
    var kept = [];
    var places = [];
    var parts = [];
    for (var i = 0; i < live.children.length; i += 1) {
      var child = live.children[i];
      if (child.hasAttribute("data-note")) {
        continue;
      }
      if (
        child.contains(document.activeElement) ||
        unsaved(child, false) ||
        (held && child.hasAttribute("data-waiting"))
      ) {
        kept.push(child);
        places.push(parts.length);
      }
      parts.push(child);
    }
    if (!kept.length) {
      live.textContent = "";
      while (fresh.firstChild) {
        live.appendChild(fresh.firstChild);
      }
      return;
    }
    var focused = document.activeElement;
    var order = [];
    var placed = [];
    for (var f = 0; f < fresh.children.length; f += 1) {
      var part = fresh.children[f];
      var mine = null;
      for (var k = 0; k < kept.length && !mine; k += 1) {
        if (placed.indexOf(kept[k]) < 0 && sameKind(kept[k], part, held)) {
          mine = kept[k];
        }
      }
      if (mine) {
        placed.push(mine);
      }
      order.push(mine || part);
    }
    for (var m = 0; m < kept.length; m += 1) {
      if (placed.indexOf(kept[m]) < 0) {
        order.splice(Math.min(places[m], order.length), 0, kept[m]);
      }
    }
    for (var j = live.childNodes.length - 1; j >= 0; j -= 1) {
      if (kept.indexOf(live.childNodes[j]) < 0) {
        live.removeChild(live.childNodes[j]);
      }
    }
    var at = live.firstElementChild; // the kept parts alone now, in their order
    for (var n = 0; n < order.length; n += 1) {
      if (order[n] === at) {
        at = at.nextElementSibling;
      } else {
        live.insertBefore(order[n], at); // a kept part out of its order moves: rare
      }
    }
    if (focused && document.activeElement !== focused && live.contains(focused)) {
      focused.focus();
    }
    for (var p = 0; p < kept.length; p += 1) {
      hold(kept[p], asOf);
    }
    notePaused(live);
  }

  function sameKind(kept, part, held) {
    if (held && kept.hasAttribute("data-waiting")) {
      return part.hasAttribute("data-waiting");
    }
    return part.tagName === kept.tagName && part.className === kept.className;
  }

  // Beside each part left as it was, in words a sighted reader sees (a dashed outline alone
  // says nothing): since when, what brings it back, and any emergency waiting that the
  // waiting table left as it was does not show.
  function notePaused(live) {
    var old = live.querySelectorAll(":scope > [data-note]");
    for (var i = 0; i < old.length; i += 1) {
      live.removeChild(old[i]);
    }
    var held = live.hasAttribute("data-held");
    var tickets = emergencyTickets(live);
    for (var j = 0; j < live.children.length; j += 1) {
      var part = live.children[j];
      if (!part.hasAttribute("data-paused")) {
        continue;
      }
      var paused = held && part.hasAttribute("data-waiting");
      var note = document.createElement("p");
      note.className = "paused-note";
      note.setAttribute("data-note", "");
      note.textContent =
        (paused ? "Paused: this table is as of " : "Not refreshed while you edit here: as of ") +
        part.getAttribute("data-as-of") +
        (paused
          ? ". Press Pause updates again to resume."
          : ". It refreshes once what you changed is sent or undone, and the focus is elsewhere.");
      if (part.hasAttribute("data-waiting")) {
        var unseen = tickets.filter(function (ticket) {
          return !part.querySelector('tr.emergency[data-ticket="' + ticket + '"]');
        });
        if (unseen.length) {
          var news = document.createElement("strong");
          news.className = "unseen-emergency";
          news.textContent =
            (unseen.length === 1
              ? "New emergency waiting, not in this table: ticket "
              : "New emergencies waiting, not in this table: tickets ") +
            unseen.join(", ") +
            (paused ? ". Resume updates to see it." : ". Send or undo your change here to see it.");
          note.appendChild(document.createTextNode(" "));
          note.appendChild(news);
          note.className += " alert";
        }
      }
      live.insertBefore(note, part);
      j += 1; // the part itself, one further on now
    }
  }

  // The emergencies waiting first in the tab's title ("(1 emergency) Live queue · ..."): what
  // a tab in the background shows.
  function retitle(live) {
    var count = emergencyCount(live);
    var title = document.title.replace(/^\(\d+ emergenc(?:y|ies)\) /, "");
    document.title = count
      ? "(" + count + " emergenc" + (count === 1 ? "y" : "ies") + ") " + title
      : title;
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
    var active = document.activeElement;
    var main = document.querySelector("main");
    if (active && active.matches && active.matches("main input[type=text], main textarea")) {
      return true;
    }
    return main !== null && unsaved(main, true);
  }

  // A field typed in and not sent, a choice made or a box ticked, in `root`: what a swap or a
  // reload would lose. `blank`: a field's words count however they came (the desk's refused
  // form, shown again with them: not sent either); else only a field changed since it came.
  // Notes the tab keeps (data-keep) survive a reload: they hold nothing up.
  function unsaved(root, blank) {
    var fields = root.querySelectorAll("input[type=text], textarea");
    for (var i = 0; i < fields.length; i += 1) {
      var was = blank ? "" : fields[i].defaultValue;
      if (!fields[i].hasAttribute("data-keep") && fields[i].value !== was) {
        return true;
      }
    }
    var choices = root.querySelectorAll("select");
    for (var j = 0; j < choices.length; j += 1) {
      if (choices[j].selectedIndex !== firstChoice(choices[j])) {
        return true;
      }
    }
    var boxes = root.querySelectorAll("input[type=checkbox]");
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

  // The talk and wrap-up timers: how long since the start the page gives (a <time>, which
  // is all a page without this script says), counted from the server's reckoning of it when
  // the page was made (`data-elapsed`), so a computer's wrong clock does not skew it. No live
  // region: it would be read out every second; a screen reader finds it where it is.
  function timers() {
    var shown = document.querySelectorAll(".timer .elapsed[data-elapsed]");
    if (!shown.length) {
      return;
    }
    var start = Date.now();
    function tick() {
      var gone = Math.floor((Date.now() - start) / 1000);
      for (var i = 0; i < shown.length; i += 1) {
        var seconds = Math.max(0, Number(shown[i].getAttribute("data-elapsed")) + gone);
        shown[i].textContent = "for " + clock(seconds) + " (mm:ss), ";
        shown[i].hidden = false;
      }
    }
    tick();
    window.setInterval(tick, 1000);
  }

  // mm:ss, minutes not wrapped into hours (75:03), as the server's pages write a wait.
  function clock(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return (minutes < 10 ? "0" : "") + minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  // The freeze form's tick box names the account that will be frozen: the UID typed above
  // as it is typed, else the case's (the page's own words for it, `data-unnamed`).
  var UID = /^[0-9]{1,32}$/;

  function freezeTargets() {
    var targets = document.querySelectorAll(".freeze-target[data-uid-field]");
    for (var i = 0; i < targets.length; i += 1) {
      var field = document.getElementById(targets[i].getAttribute("data-uid-field"));
      if (field) {
        nameTarget(targets[i], field);
      }
    }
  }

  function nameTarget(target, field) {
    function named() {
      var typed = field.value.trim();
      if (typed === "") {
        target.textContent = target.getAttribute("data-unnamed");
      } else if (UID.test(typed)) {
        target.textContent = "account " + typed;
      } else {
        target.textContent = "no account yet (a UID is digits only)";
      }
    }
    field.addEventListener("input", named);
    named();
  }

  var queue = document.getElementById("queue-live");
  if (queue) {
    settle(queue);
    var refresher = refreshLive(queue, function () {
      retitle(queue);
    });
    var pause = document.getElementById("pause-live");
    if (pause) {
      pauseControl(pause, queue, document.getElementById("pause-state"), refresher);
    }
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
    timers();
    keepNotes();
    freezeTargets();
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
