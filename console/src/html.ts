// The console's one way to build DOM: htm tagged templates over Preact's `h`. Preact sets text and
// attributes through the DOM (never as HTML), so every value interpolated here is shown as text.

import htm from 'htm';
import { h, type VNode } from 'preact';

export const html = htm.bind(h) as (strings: TemplateStringsArray, ...values: unknown[]) => VNode;
