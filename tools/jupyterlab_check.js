// Real-browser check of notebooks 04 and 06 in JupyterLab (headless Chromium through playwright-core).
// Not part of CI (it needs Debian's chromium and `npm install playwright-core`); run by hand:
//   cp notebooks/0[46]*.ipynb /tmp/jl/nb && cd /tmp/jl/nb && TTLESSON_MODEL=tiny TTLESSON_WORKDIR=/tmp/jl/work \
//     jupyter lab --no-browser --port 8899 --ServerApp.token='' --ServerApp.ip=127.0.0.1 &
//   NODE_PATH=<folder with node_modules/playwright-core> node tools/jupyterlab_check.js /tmp/jl
// It runs every cell, prints the progress bars' final state, whether the video plays, and saves screenshots.
const { chromium } = require('playwright-core');
const outDir = process.argv[2] || '.';

(async () => {
  const browser = await chromium.launch({executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    '--autoplay-policy=no-user-gesture-required']});
  const page = await browser.newPage({viewport: {width: 1300, height: 1600}});
  for (const nb of ['04_generate_frames', '06_stitch_video']) {
    await page.goto(`http://127.0.0.1:8899/lab/tree/${nb}.ipynb`);
    await page.waitForSelector('.jp-Notebook', {timeout: 120000});
    await page.waitForTimeout(6000);
    await page.locator('.lm-MenuBar-itemLabel', {hasText: /^Run$/}).click();
    await page.locator('.lm-Menu-itemLabel', {hasText: /^Run All Cells$/}).click();
    await page.waitForTimeout(5000);
    await page.screenshot({path: `${outDir}/${nb}-running.png`});
    await page.waitForFunction(() => ![...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('*')),
                               null, {timeout: 400000});
    await page.waitForTimeout(3000);
    const bars = await page.evaluate(() => [...document.querySelectorAll('.widget-hprogress')]
      .map(b => b.innerText + ' ' + (b.querySelector('.progress-bar') || {style: {}}).style.width));
    const widgetErrors = await page.locator('.jupyter-widgets-error-widget').count();
    const video = await page.evaluate(async () => {
      const v = document.querySelector('video');
      if (!v) return null;
      const t0 = v.currentTime;
      await new Promise(r => setTimeout(r, 2500));
      return {readyState: v.readyState, duration: v.duration, loop: v.loop, playing: v.currentTime !== t0, error: v.error && v.error.code};
    });
    console.log(nb, JSON.stringify({bars, widgetErrors, video}));
    await page.screenshot({path: `${outDir}/${nb}-done.png`, fullPage: true});
  }
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
