/**
 * The README's pictures: docs/ipre-call.svg is what scripts/draw-diagram.ts draws (like the
 * guests' build check, so that the committed picture cannot go stale), and every image the README
 * embeds (the diagram and the plots of scripts/readme-plots.ts) is in the repository. Needs no KVM.
 */
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DIAGRAM_PATH, drawDiagram } from "../scripts/draw-diagram.ts";
import { repoRoot } from "./harness.ts";

describe("README pictures", () => {
  it("docs/ipre-call.svg equals what scripts/draw-diagram.ts draws (run the script and commit)", () => {
    expect(readFileSync(DIAGRAM_PATH, "utf8")).toBe(drawDiagram());
  });

  it("the diagram is self-contained: a white background, no external fonts, images or links", () => {
    const svg = drawDiagram();
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toMatch(/<rect width="\d+" height="\d+" fill="#ffffff"\/>/);
    expect(svg).not.toMatch(/@import|@font-face|<image|href="http|xlink:href/);
    for (const n of [1, 2, 3, 4, 5]) expect(svg).toContain(`>${n}</text>`);
  });

  it("every image the README embeds is in the repository", () => {
    const readme = readFileSync(`${repoRoot}README.md`, "utf8");
    const images = [...readme.matchAll(/!\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
    expect(images).toEqual(expect.arrayContaining(["docs/ipre-call.svg", "docs/img/latency.svg", "docs/img/fanin.svg"]));
    for (const p of images) expect(existsSync(`${repoRoot}${p}`), p).toBe(true);
  });
});
