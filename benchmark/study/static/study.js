// The rating page of `omni study serve`: the rater's next item from the API, the references,
// the caption, the video(s) with sound, one question per dimension, and the answers posted
// back. A reload (or a later visit) asks the server again and resumes at the first item not
// yet answered. Nothing here knows a model's name: the server sends opaque ids only.
"use strict";
(function () {
  const match = location.pathname.match(/^\/r\/([A-Za-z0-9_-]+)\/?$/);
  const base = match ? "/r/" + match[1] : null;
  const app = document.getElementById("app");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function media(id) { return base + "/m/" + encodeURIComponent(id); }

  function message(text, cls) {
    app.replaceChildren(el("p", { "data-testid": "status", class: cls || "" }, text));
  }

  async function load() {
    let res;
    try {
      res = await fetch(base + "/api/state", { cache: "no-store" });
    } catch (e) {
      message("The study server cannot be reached. Reload the page to try again.", "error");
      return;
    }
    if (!res.ok) {
      message(res.status === 404 ? "This link is not valid." : "The server refused (" + res.status + ").", "error");
      return;
    }
    render(await res.json());
  }

  function progress(state) {
    const pct = state.total ? Math.round((100 * state.done) / state.total) : 100;
    return el("div", { class: "progress", "data-testid": "progress" },
      el("span", {}, state.item ? `Item ${state.done + 1} of ${state.total}` : `${state.total} of ${state.total} done`),
      el("div", { class: "bar" }, el("span", { style: null })),
      el("span", {}, pct + "%"));
  }

  function clock(t) {
    if (t === null || t === undefined) return "";
    const m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
    return `${m}:${s.padStart(4, "0")}`;
  }

  function caption(item) {
    const box = el("div", { class: "caption", "data-testid": "caption" });
    const sc = item.script;
    if (!sc) { box.append(el("pre", {}, item.caption)); return box; }
    for (const [label, key] of [["Scene", "scene"], ["People", "appearance"], ["Actions", "actions"], ["Sound", "audio"]]) {
      if (sc[key]) box.append(el("p", {}, el("b", {}, label + ": "), sc[key]));
    }
    if (sc.speech.length) {
      const list = el("ol", { class: "speech", "data-testid": "speech" });
      for (const u of sc.speech) {
        const when = u.start !== null && u.start !== undefined ? ` (${clock(u.start)}–${clock(u.end)})` : "";
        list.append(el("li", {}, el("b", {}, `${u.person || "Someone"}${when}: `), `“${u.text}”`));
      }
      box.append(el("p", {}, el("b", {}, "Speech, in order:")), list);
    }
    box.append(el("details", {}, el("summary", {}, "Full caption"), el("pre", {}, item.caption)));
    return box;
  }

  function render(state) {
    const bar = progress(state);
    bar.querySelector(".bar > span").style.width = (state.total ? (100 * state.done) / state.total : 100) + "%";
    if (!state.item) {
      app.replaceChildren(bar, el("h1", { "data-testid": "finished" }, "Thank you!"),
        el("p", {}, `All ${state.total} items are rated. You can close this page.`));
      return;
    }
    const item = state.item;
    const pairwise = state.protocol === "pairwise";
    const refs = el("div", { class: "refs", "data-testid": "references" });
    const people = Math.max(item.images.length, item.voices.length);
    for (let k = 0; k < people; k++) {
      const card = el("div", { class: "ref" }, el("div", { class: "name" }, `Person ${k + 1}`));
      if (item.images[k]) card.append(el("img", { src: media(item.images[k]), alt: `reference photo of person ${k + 1}` }));
      if (item.voices[k]) card.append(el("audio", { src: media(item.voices[k]), controls: true, preload: "metadata", "data-testid": "voice" }));
      refs.append(card);
    }
    const played = new Set();
    const videos = el("div", { class: "videos" });
    item.videos.forEach((id, i) => {
      const name = pairwise ? (i === 0 ? "Left video" : "Right video") : "Video";
      const flag = el("span", { class: "played" }, "");
      const v = el("video", { src: media(id), controls: true, playsinline: true, preload: "metadata", "data-testid": "video" });
      v.addEventListener("play", () => { played.add(i); flag.textContent = " \u2713 played"; update(); });
      videos.append(el("div", { class: "video" }, el("div", { class: "name" }, name, flag), v));
    });
    const form = el("form", { "data-testid": "answers" });
    const chosen = {};
    for (const d of state.dimensions) {
      const choices = el("div", { class: "choices" });
      const options = pairwise
        ? [["left", "Left is better"], ["same", "About the same"], ["right", "Right is better"]]
        : Array.from({ length: state.scale[1] - state.scale[0] + 1 }, (_, j) => {
            const v = state.scale[0] + j;
            return [v, `${v} (${state.scale_labels[String(v)] || ""})`];
          });
      for (const [value, label] of options) {
        const input = el("input", { type: "radio", name: d.key, value: String(value), "data-testid": `${d.key}-${value}` });
        input.addEventListener("change", () => { chosen[d.key] = pairwise ? value : Number(value); update(); });
        choices.append(el("label", {}, input, " " + label));
      }
      form.append(el("fieldset", { "data-testid": `dim-${d.key}` }, el("legend", {}, d.label),
        el("p", { class: "question" }, d.question), choices));
    }
    const hint = el("span", { class: "hint", "data-testid": "hint" });
    const submit = el("button", { type: "submit", disabled: true, "data-testid": "submit" }, "Submit and continue");
    form.append(el("div", {}, submit, hint));
    function update() {
      const need = state.dimensions.filter((d) => !(d.key in chosen)).length;
      const unplayed = item.videos.length - played.size;
      submit.disabled = need > 0 || unplayed > 0;
      hint.textContent = unplayed > 0 ? "Play every video (with sound) before answering."
        : need > 0 ? `${need} question${need > 1 ? "s" : ""} left.` : "";
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      submit.disabled = true;
      let res;
      try {
        res = await fetch(base + "/api/answer", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ item: item.id, answers: chosen }),
        });
      } catch (e) {
        hint.textContent = "Not saved: the server cannot be reached. Try again.";
        submit.disabled = false;
        return;
      }
      if (res.ok || res.status === 409) { window.scrollTo(0, 0); load(); return; }
      let why = "";
      try { why = (await res.json()).error || ""; } catch (e) { /* not JSON */ }
      hint.textContent = `Not saved (${res.status}) ${why}`;
      submit.disabled = false;
    });
    app.replaceChildren(bar,
      el("h2", {}, "References"), refs,
      el("h2", {}, "Caption"), caption(item),
      el("h2", {}, pairwise ? "Videos" : "Video"), videos,
      el("h2", {}, "Your answers"), form);
    update();
  }

  if (!base) message("Open the personal link you were given.", "error");
  else load();
})();
