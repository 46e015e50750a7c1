export { default } from "@cage/vitest-config"
