// Copy buttons: <button data-copy="ID"> copies the text of the element with that id.
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
});
// Forms that change something for good ask first.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!confirm(form.dataset.confirm)) event.preventDefault();
  });
});
// A live region: <div data-poll="PATH"> replaces its content with PATH's every two seconds.
document.querySelectorAll("[data-poll]").forEach((region) => {
  const refresh = async () => {
    try {
      const answer = await fetch(region.dataset.poll, { credentials: "same-origin" });
      if (answer.ok) region.innerHTML = await answer.text();
    } catch (_) {
      // Offline for a moment: the next poll tries again.
    }
  };
  setInterval(refresh, 2000);
});
