// The dashboard's only script, hand-written: refreshes the live queue, and opens the call-tree
// picture at the start of a call. Every page works without it.
(function () {
  "use strict";

  // The queue: fetch the table alone every few seconds and swap it in. Without this script
  // a <noscript> refresh reloads the page instead.
  function refreshQueue(live) {
    var url = live.getAttribute("data-src");
    var every = (Number(live.getAttribute("data-every")) || 5) * 1000;

    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.redirected) {
            window.location.reload(); // signed out meanwhile: on to the sign-in form
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            live.innerHTML = html; // our own server-rendered, escaped fragment
            live.removeAttribute("data-stale");
          } else {
            live.setAttribute("data-stale", "true");
          }
        })
        .catch(function () {
          live.setAttribute("data-stale", "true"); // keep the last table; try again
        })
        .finally(function () {
          window.setTimeout(refresh, every);
        });
    }

    window.setTimeout(refresh, every);
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

  var live = document.getElementById("queue-live");
  if (live) {
    refreshQueue(live);
  }
  var tree = document.getElementById("tree-picture");
  if (tree) {
    centreTree(tree);
  }
})();
