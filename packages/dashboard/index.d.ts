/** Absolute path of the built dashboard (`dist/`, made by `npm run build -w packages/dashboard`). */
export declare const distDir: string
