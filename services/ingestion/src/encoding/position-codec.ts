import { Codec } from '@pitwall/contract';
import { CODEC_16, CODEC_8, type AvlCodecId } from '@pitwall/teltonika';

/** The protobuf codec enum of a wire codec id (what the contract's encodePositions takes). */
export function positionCodec(codec: AvlCodecId): Codec {
  return codec === CODEC_8 ? Codec.CODEC_8 : codec === CODEC_16 ? Codec.CODEC_16 : Codec.CODEC_8_EXTENDED;
}
