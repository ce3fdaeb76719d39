/** A regular expression written as text in the config; compiled where it is used. */
import { z } from 'zod';

export const regexText = () =>
  z.string({ error: 'expected a regular expression' }).superRefine((text, ctx) => {
    try {
      new RegExp(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}` });
    }
  });
