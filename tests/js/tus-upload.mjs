// Upload a file to a tus endpoint with tus-js-client, as a Node application would.
//
//   node tus-upload.mjs ENDPOINT FILE STORAGE CHUNK_SIZE [ABORT_AFTER_BYTES]
//
// The upload URL is remembered in STORAGE (tus-js-client's FileUrlStorage), so a
// second run finds the previous upload and resumes it. With ABORT_AFTER_BYTES the
// upload is aborted once that many bytes are confirmed (an interruption). Prints
// one JSON line: {url, resumed, offset, done}.
import * as fs from 'node:fs'
import { Upload, FileUrlStorage } from 'tus-js-client'

const [endpoint, file, storage, chunkSize, abortAfter] = process.argv.slice(2)
const data = fs.readFileSync(file)
const limit = abortAfter === undefined ? Infinity : Number(abortAfter)

const upload = new Upload(data, {
  endpoint,
  chunkSize: Number(chunkSize),
  metadata: { filename: 'data.bin', filetype: 'application/octet-stream' },
  urlStorage: new FileUrlStorage(storage),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: true,
  retryDelays: [100, 300, 1000],
})

let resumed = false
let confirmed = 0
const result = await new Promise((resolve, reject) => {
  upload.options.onError = reject
  upload.options.onSuccess = () => resolve(true)
  upload.options.onChunkComplete = (_size, accepted) => {
    confirmed = accepted
    if (accepted >= limit) {
      upload.abort().then(() => resolve(false), reject)
    }
  }
  upload.findPreviousUploads().then((previous) => {
    if (previous.length > 0) {
      resumed = true
      upload.resumeFromPreviousUpload(previous[0])
    }
    upload.start()
  }, reject)
}).catch((err) => {
  console.error(String(err))
  process.exit(1)
})
console.log(JSON.stringify({ url: upload.url, resumed, offset: confirmed, done: result }))
